"""`posattn plot-positions`: the sinusoidal encoding over `pos` and `i` (waves, and the similarity between positions),
and what a trained model's scheme holds, drawn from the scheme's own `panel` or the panels below.
"""

import math
import textwrap

import torch

from .. import arguments
from ..model.positional import (
    POSITION_SCHEMES,
    AlibiBias,
    LearnedPositions,
    NoPositions,
    RotaryPositions,
    SinusoidalPositions,
    sinusoidal_table,
)
from .common import heat_map, pyplot, save

ROW_HEIGHT = 4.5  # inches per row of panels in the positions figure


POSITIONS_WIDTH = 16.0  # inches


def wavelength(i: int, dim: int) -> float:
    """Tokens per turn of the wave of dimension pair `i`: 2π · 10000^(2i/dim)."""
    return 2 * math.pi * 10000 ** (2 * i / dim)


def plot_closed_form(axes, positions: int, dim: int) -> None:
    """Row of three panels: the table, some of its waves, and the dot product between positions."""
    table = sinusoidal_table(torch.arange(positions), dim)
    heat_map(axes[0], table, f"sinusoidal encoding PE(pos, dim), d = {dim}", "dimension", "position")

    pos = torch.arange(positions)
    for i in sorted({0, dim // 16, dim // 8, dim // 4}):
        axes[1].plot(pos, table[:, 2 * i], label=f"i = {i}: wavelength {wavelength(i, dim):,.0f} tokens")
    axes[1].set(title="waves sin(pos / 10000^(2i/d)): i sets the frequency", xlabel="position pos",
                ylabel="PE(pos, 2i)", ylim=(-1.15, 2.0))
    axes[1].legend(fontsize=8, loc="upper right", ncols=2)

    heat_map(axes[2], table @ table.T, "PE(p) · PE(q): a function of p − q", "position q", "position p",
             cmap="viridis", symmetric=False)


def similarity(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every pair of rows."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


def plot_learned(axes, model, positions: int) -> None:
    table = model.model.positions.weight[:positions].detach()
    heat_map(axes[0], table, f"learned table (first {positions} of {model.config.max_position_embeddings})",
             "dimension", "position")
    heat_map(axes[1], similarity(table), "learned: cosine similarity between positions", "position q",
             "position p", cmap="viridis", symmetric=False)
    # Training pulls neighbouring positions together where it reaches them; rows it never reached stay random.
    closed = sinusoidal_table(torch.arange(positions), table.shape[1])
    axes[2].plot(similarity(table).diagonal(1), label="learned")
    axes[2].plot(similarity(closed).diagonal(1), label="sinusoidal (closed form)", linestyle="--")
    axes[2].set(title="how alike neighbours p and p + 1 are", xlabel="position p", ylabel="cosine similarity")
    axes[2].legend(fontsize=8)


def plot_sinusoidal(axes, model, positions: int) -> None:
    scheme = model.model.positions
    amplitude = scheme.amplitude
    table = scheme.waves(torch.arange(positions))
    heat_map(axes[0], table, f"the model adds a · PE, fixed amplitude a = {amplitude:g}", "dimension", "position")
    # The balance between what a token is and where it is: the norms of the two terms of the embedding sum.
    tokens = model.get_input_embeddings().weight.detach().norm(dim=-1)
    position_norm = amplitude * math.sqrt(scheme.dim / 2)  # every sin/cos pair has norm 1
    axes[1].hist(tokens.float().numpy(), bins=40, color="tab:blue", alpha=0.8, label="token embeddings")
    axes[1].axvline(position_norm, color="tab:red", label=f"position term a·PE: {position_norm:.3f}")
    axes[1].set(title="norms of the two summed terms", xlabel="L2 norm", ylabel="tokens")
    axes[1].legend(fontsize=8)
    heat_map(axes[2], similarity(table), "cosine similarity between positions (the closed form's)",
             "position q", "position p", cmap="viridis", symmetric=False)


def plot_rotary(axes, model, positions: int) -> None:
    scheme = model.model.positions
    inv_freq = scheme.inv_freq.detach().float()
    pairs = torch.arange(len(inv_freq))
    axes[0].semilogy(pairs, inv_freq, "o-", label=f"rotary: θ^(−2j/{scheme.head_dim}), θ = {scheme.rope_theta:g}")
    closed = 1 / 10000 ** (2 * pairs / scheme.head_dim)
    axes[0].semilogy(pairs, closed, "x--", label=f"sinusoidal: 10000^(−2i/{scheme.head_dim})")
    axes[0].set(title="radians turned per position, per feature pair", xlabel="feature pair j",
                ylabel="frequency (rad / token)")
    axes[0].legend(fontsize=8)
    # q·k after rotating q by m and k by n depends on m − n only: for q = k = all ones, Σ_j cos((m − n)·ω_j).
    distance = torch.arange(positions)
    score = torch.cos(distance[:, None] * inv_freq[None, :]).mean(-1)
    axes[1].plot(distance, score)
    axes[1].set(title="score of equal q and k, rotated m − n apart (mean cos)", xlabel="distance m − n",
                ylabel="relative score")
    angles = (distance[:, None] * inv_freq[None, :]) % (2 * math.pi)
    heat_map(axes[2], angles, "rotation angle (mod 2π) per position and pair", "feature pair j", "position",
             cmap="twilight", symmetric=False)


def plot_alibi(axes, model, positions: int) -> None:
    slopes = model.model.positions.slopes.detach().float()
    heads = torch.arange(len(slopes))
    axes[0].bar(heads, slopes, color="tab:green")
    # 2^(-8(h+1)/n) for a power-of-two head count n; other counts interleave two such sequences (alibi_slopes).
    formula = f"2^(−8(h+1)/{len(slopes)}), " if len(slopes) & (len(slopes) - 1) == 0 else ""
    axes[0].set(title=f"ALiBi slopes ({formula}Press et al.) for {len(slopes)} heads", xlabel="head", ylabel="slope m")
    distance = torch.arange(positions)
    for head in heads.tolist():
        axes[1].plot(distance, -slopes[head] * distance, label=f"head {head}: m = {slopes[head]:.4f}")
    axes[1].set(title="bias added to the score: −m · distance", xlabel="distance to the key", ylabel="bias")
    axes[1].legend(fontsize=7)
    query, key = distance[:, None], distance[None, :]
    bias = torch.where(key <= query, -slopes[0] * (query - key), torch.tensor(float("nan")))
    heat_map(axes[2], bias, "head 0 (steepest): bias of query p for key q ≤ p", "key position q",
             "query position p", cmap="magma", symmetric=False)


def plot_no_positions(axes, model, positions: int) -> None:
    for axes_ in axes:
        axes_.axis("off")
    axes[1].text(0.5, 0.5, "position_embedding_type = 'none':\nno position signal; only the causal mask\n"
                           "tells the model which tokens came before", ha="center", va="center", fontsize=12)


def plot_scheme(axes, model, positions: int) -> None:
    """Any other scheme, from what it says of itself (`PositionScheme.panel`, `description`, `citation`): its panel,
    the cosine similarity between positions when the panel is a table of positions, and what it is."""
    scheme = model.model.positions
    panel = scheme.panel(positions)
    if panel is not None and panel.kind == "heatmap":
        heat_map(axes[0], panel.data, panel.title, panel.xlabel, panel.ylabel)
        heat_map(axes[1], similarity(panel.data), f"{scheme.name}: cosine similarity between positions",
                 "position q", "position p", cmap="viridis", symmetric=False)
    elif panel is not None:
        for row, label in zip(panel.data, panel.series or [None] * len(panel.data)):
            axes[0].plot(row, label=label)
        axes[0].set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.series:
            axes[0].legend(fontsize=7)
        axes[1].axis("off")
    else:
        axes[0].axis("off")
        axes[1].axis("off")
    axes[2].axis("off")
    about = textwrap.fill(f"{scheme.name}: {scheme.description}", 50)
    axes[2].text(0.5, 0.5, about + "\n\n" + textwrap.fill(scheme.citation, 50), ha="center", va="center", fontsize=11)


# Built-in schemes with richer panels of their own, by class (a subclass, or a scheme registered at run time, is
# drawn from what it says of itself by `plot_scheme`).
MODEL_PANELS = {
    LearnedPositions: plot_learned,
    SinusoidalPositions: plot_sinusoidal,
    RotaryPositions: plot_rotary,
    AlibiBias: plot_alibi,
    NoPositions: plot_no_positions,
}


@arguments.checked(output=arguments.path,
                   positions=arguments.bounded(arguments.integer, minimum=2, maximum=arguments.MAX_PLOTTED_POSITIONS),
                   dim=arguments.optional(arguments.bounded(arguments.even, maximum=arguments.MAX_PLOTTED_DIMENSIONS)))
def plot_positions(output: str, model=None, positions: int = 128, dim: int | None = None) -> str:
    """Write the positions figure to `output` (PNG): the closed form of the sinusoidal encoding for `positions`
    positions and `dim` dimensions (default: the model's hidden size, else 128), and, given a `PosAttnForCausalLM`,
    a second row with what its position scheme holds. Size: `POSITIONS_WIDTH` x `ROW_HEIGHT` inches per row."""
    if model is not None and getattr(model.config, "model_type", None) != "posattn":
        raise ValueError(f"the model is a {model.config.model_type!r} model, not an hf_posattn one: give a folder "
                         f"written by `posattn train`.")
    limit = None if model is None else POSITION_SCHEMES[model.config.position_embedding_type].max_length(model.config)
    if limit is not None:  # nothing to draw past the longest input
        positions = min(positions, limit)
    dim = dim or (model.config.hidden_size if model is not None else 128)
    if dim < 2 or dim % 2:
        raise ValueError(f"--dim {dim}: the encoding pairs sines with cosines; give an even number of dimensions.")
    plt = pyplot()
    rows = 1 if model is None else 2
    figure, axes = plt.subplots(rows, 3, figsize=(POSITIONS_WIDTH, ROW_HEIGHT * rows), squeeze=False,
                                layout="constrained")
    plot_closed_form(axes[0], positions, dim)
    if model is not None:
        with torch.no_grad():
            MODEL_PANELS.get(type(model.model.positions), plot_scheme)(axes[1], model, positions)
    return save(figure, output)
