"""Pictures of where tokens are, what they look at, and how training went, as PNG files.

- `plot_positions`: the sinusoidal encoding of Vaswani et al. as a heat map (position x dimension), a few of its
  waves, and the dot product between positions; given a trained model, also what its scheme learned or uses (a
  learned table, the size of the sinusoidal waves next to the token embeddings, the rotary frequencies, the ALiBi
  slopes), next to the closed form.
- `plot_attention`: the attention weights of every layer and head for a text, token labels on both axes (a token
  that starts a word marked), one colour bar.
- `plot_training`: training and validation loss against tokens seen, the learning rate below, the unigram baseline,
  from the Trainer's log history of one or more runs (`reporting` reads it from run folders).

matplotlib is an optional dependency (`pip install "hf-posattn[plot]"`), drawn with its Agg backend: files only,
no screen needed. Figures have fixed sizes (`DPI` pixels per inch), so the same command gives the same picture.
"""

import io
import math
import textwrap

import torch

from .files import write_text, write_with
from .positional import (POSITION_SCHEMES, AlibiBias, LearnedPositions, NoPositions, RotaryPositions,
                         SinusoidalPositions, sinusoidal_table)


DPI = 100
ROW_HEIGHT = 4.5  # inches per row of panels in the positions figure
POSITIONS_WIDTH = 16.0  # inches
ATTENTION_CELL = 2.5  # inches per attention heat map in the grid, at least
ATTENTION_CELL_PER_TOKEN = 0.18  # ... and this much per token, so that labels stay readable
ZOOM_SIZE = 8.0  # inches: one head
MAX_ATTENTION_TOKENS = 64


def pyplot():
    """matplotlib's pyplot on the Agg backend (writes files; needs no screen), or a clear error without it."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError('drawing figures needs matplotlib, which is not installed: pip install "hf-posattn[plot]"'
                         ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: str) -> str:
    """Write `figure` as a PNG at `DPI` (its size in inches times DPI, exactly) and free it. The image is reduced
    to a palette of 256 colours (Pillow comes with matplotlib): a third of the bytes, no visible change. The file
    is written whole (`files.write_with`): a failure leaves the previous one as it was."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    pyplot().close(figure)
    with Image.open(buffer) as image:
        picture = image.convert("RGB").quantize(colors=256)
    return write_with(path, lambda temporary: picture.save(temporary, format="png", optimize=True))


def heat_map(axes, values, title: str, xlabel: str, ylabel: str, cmap: str = "RdBu_r", symmetric: bool = True,
             **kwargs):
    values = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else values
    if symmetric:
        bound = float(abs(values).max()) or 1.0
        kwargs.setdefault("vmin", -bound)
        kwargs.setdefault("vmax", bound)
    image = axes.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", **kwargs)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02)
    return image


# ---- positions ----

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
    heat_map(axes[2], bias, f"head 0 (steepest): bias of query p for key q ≤ p", "key position q",
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


def plot_positions(output: str, model=None, positions: int = 128, dim: int | None = None) -> str:
    """Write the positions figure to `output` (PNG): the closed form of the sinusoidal encoding for `positions`
    positions and `dim` dimensions (default: the model's hidden size, else 128), and, given a `PosAttnForCausalLM`,
    a second row with what its position scheme holds. Size: `POSITIONS_WIDTH` x `ROW_HEIGHT` inches per row."""
    if positions < 2:
        raise ValueError(f"--positions {positions}: draw at least 2 positions.")
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


# ---- attention ----

WORD_START = "▁"  # drawn before a token that starts a word (as SentencePiece shows it)
# How white space shows in token labels: escaped by `token_labels`, or as byte-level BPE ('Ġ', 'Ċ') and SentencePiece
# ('▁') store it.
WHITE_SPACE_FORMS = {"\\n": "\n", "Ġ": " ", "Ċ": "\n", "▁": " "}


def label_text(label: str) -> str:
    for form, space in WHITE_SPACE_FORMS.items():
        label = label.replace(form, space)
    return label


def word_starts(labels: list[str]) -> list[bool]:
    """Which tokens start a word: a token with something visible in it that begins with white space (a space, or
    byte-level BPE's 'Ġ', which decoding turns into a space) or comes first or after white space (a line break).
    Sub-word pieces that continue a word do not (' Jul', 'iet'), nor do tokens of white space alone."""
    texts = [label_text(label) for label in labels]
    return [bool(text.strip()) and (index == 0 or text[0].isspace() or texts[index - 1][-1:].isspace())
            for index, text in enumerate(texts)]


def token_labels(tokenizer, ids: list[int]) -> list[str]:
    """What each token reads as (byte-level BPE shows a space as 'Ġ'; decoding one token at a time undoes that)."""
    return [tokenizer.decode([token]).replace("\n", "\\n") or repr(token) for token in ids]


@torch.no_grad()
def attention_weights(model, tokenizer, text: str, max_tokens: int = MAX_ATTENTION_TOKENS):
    """`(weights [layers, heads, tokens, tokens], labels)` for `text`, from `output_attentions=True`. The model must
    run the eager kernel (`attn_implementation="eager"`), the only one that returns the weights."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the text is empty: give some text to look at, e.g. 'ROMEO: But soft'.")
    if len(ids) > max_tokens:
        raise ValueError(f"the text is {len(ids)} tokens long; heat maps with labels stay readable up to "
                         f"{max_tokens}: give shorter text, or raise --max-tokens.")
    if model.config._attn_implementation != "eager":
        raise ValueError(f"attention weights come only from the eager kernel, and the model runs "
                         f"{model.config._attn_implementation!r}: load it with attn_implementation='eager'.")
    output = model(input_ids=torch.tensor([ids], device=model.device), output_attentions=True, use_cache=False)
    return torch.stack([layer[0] for layer in output.attentions]).float().cpu(), token_labels(tokenizer, ids)


def select_heads(weights: torch.Tensor, layer: int | None, head: int | None) -> tuple[list[int], list[int]]:
    layers, heads = weights.shape[:2]
    for name, value, count in (("layer", layer, layers), ("head", head, heads)):
        if value is not None and not 0 <= value < count:
            raise ValueError(f"--{name} {value}: the model has {count} {name}s (per layer for heads), numbered 0 to "
                             f"{count - 1}.")
    return ([layer] if layer is not None else list(range(layers)), [head] if head is not None else list(range(heads)))


def attention_figure_size(rows: int, columns: int, tokens: int) -> tuple[float, float]:
    """Inches: one heat map per layer (row) and head (column), or `ZOOM_SIZE` square for one head."""
    if rows == columns == 1:
        return ZOOM_SIZE, ZOOM_SIZE
    cell = max(ATTENTION_CELL, ATTENTION_CELL_PER_TOKEN * tokens)
    return columns * cell, rows * cell


def plot_attention(output: str, weights: torch.Tensor, labels: list[str], layer: int | None = None,
                   head: int | None = None, title: str = "") -> str:
    """Write `attention_figure` as a PNG at `output`."""
    return save(attention_figure(weights, labels, layer, head, title), output)


def attention_figure(weights: torch.Tensor, labels: list[str], layer: int | None = None, head: int | None = None,
                     title: str = ""):
    """Heat maps of `weights` (`attention_weights`), rows = layers and columns = heads, each with the tokens on
    both axes (query: rows, key: columns), a token that starts a word marked `WORD_START` and bold, and one colour
    bar; `layer`/`head` keep one of each. One head alone gets the weights written in its cells when the text is
    short."""
    layers, heads = select_heads(weights, layer, head)
    plt = pyplot()
    size = attention_figure_size(len(layers), len(heads), len(labels))
    figure, axes = plt.subplots(len(layers), len(heads), figsize=size, squeeze=False, layout="constrained")
    font = 7 if len(labels) > 16 else 9
    starts = word_starts(labels)
    ticks = [WORD_START + label.lstrip(" \tĠ▁") if start else label for label, start in zip(labels, starts)]
    for row, layer_index in enumerate(layers):
        for column, head_index in enumerate(heads):
            ax = axes[row][column]
            values = weights[layer_index, head_index].numpy()
            image = ax.imshow(values, vmin=0, vmax=1, cmap="Blues", interpolation="nearest")
            ax.set_title(f"layer {layer_index}, head {head_index}", fontsize=9)
            if row == len(layers) - 1 and column == 0:
                ax.set(xlabel="key (looked at)", ylabel="query (looking)")
            ax.set_xticks(range(len(labels)), ticks, rotation=90, fontsize=font)
            ax.set_yticks(range(len(labels)), ticks, fontsize=font)
            for tick, start in zip([*ax.get_xticklabels(), *ax.get_yticklabels()], starts * 2):
                tick.set_fontweight("bold" if start else "normal")
            if len(layers) == len(heads) == 1 and len(labels) <= 16:
                for (query, key), value in zip(((q, k) for q in range(len(labels)) for k in range(len(labels))),
                                               values.ravel()):
                    if key <= query:
                        ax.text(key, query, f"{value:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if value > 0.5 else "black")
    # One scale for every head (weights are 0 to 1), so one bar beside the grid.
    figure.colorbar(image, ax=axes.ravel().tolist(), label="attention weight", fraction=0.046, pad=0.02,
                    shrink=min(1.0, 0.3 + 0.7 / len(layers)))
    figure.suptitle(title or f"attention weights: row = query token, column = key token (causal: keys up to the "
                             f"query)\n{WORD_START} and bold: the token starts a word", fontsize=10)
    return figure


def write_head_view(output: str, weights: torch.Tensor, labels: list[str]) -> str:
    """An interactive HTML page of the weights: bertviz's head view (optional: `pip install bertviz`)."""
    head_view = import_head_view()
    html = head_view([layer[None] for layer in weights], labels, prettify_tokens=False, html_action="return")
    return write_text(output, html.data)


def import_head_view():
    try:
        from bertviz import head_view
    except ImportError:
        raise ValueError('--html writes a bertviz head view, and bertviz is not installed: pip install '
                         '"hf-posattn[html]" (or pip install bertviz).') from None
    return head_view


# ---- training ----

TRAINING_SIZE = (10.0, 7.0)  # inches: the losses above, the learning rate below
TOKENS = "num_input_tokens_seen"


def training_series(log_history: list[dict], x: str) -> dict:
    """The curves of one run in the Trainer's `log_history`: training loss, validation loss and learning rate, each
    as `(x values, y values)` against `x` (a key of the logs: 'num_input_tokens_seen' or 'step')."""

    def series(key: str) -> tuple[list, list]:
        points = [(entry[x], entry[key]) for entry in log_history if key in entry]
        return [point[0] for point in points], [point[1] for point in points]

    return {"x": x, "loss": series("loss"), "eval_loss": series("eval_loss"), "learning_rate": series("learning_rate")}


def curve_entries(log_history: list[dict]) -> list[dict]:
    return [entry for entry in log_history if any(key in entry for key in ("loss", "eval_loss", "learning_rate"))]


def plot_training(output: str, runs: dict[str, list], baseline: float | dict[str, float] | None = None,
                  title: str = "") -> dict[str, list[dict]]:
    """Draw the training of `runs` (label: the Trainer's log history, or a list of them, e.g. one per seed, drawn
    in the label's colour) as a PNG at `output`: training loss (solid) and validation loss (dashed, dots) against
    tokens seen (steps when a log lacks the count), the unigram `baseline` loss as a horizontal line (one per label
    when given per label and they differ), and the learning rate in a panel below. Returns the plotted curves,
    `{label: [training_series(...) per history]}`."""
    runs = {label: [value] if value and isinstance(value[0], dict) else list(value) for label, value in runs.items()}
    if not runs or not all(runs.values()) or not all(curve_entries(history) for h in runs.values() for history in h):
        raise ValueError("nothing to draw: every run needs a log history with a loss or learning rate in it.")
    entries = [entry for histories in runs.values() for history in histories for entry in curve_entries(history)]
    x = TOKENS if all(TOKENS in entry for entry in entries) else "step"
    plotted = {label: [training_series(history, x) for history in histories] for label, histories in runs.items()}

    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    figure, (losses, rates) = plt.subplots(2, 1, figsize=TRAINING_SIZE, sharex=True, height_ratios=(3, 1),
                                           layout="constrained")
    colours = {label: f"C{index % 10}" for index, label in enumerate(plotted)}
    for label, curves in plotted.items():
        for curve in curves:
            losses.plot(*curve["loss"], color=colours[label], linewidth=1.2)
            losses.plot(*curve["eval_loss"], color=colours[label], linestyle="--", marker="o", markersize=4)
            rates.plot(*curve["learning_rate"], color=colours[label], linewidth=1.2)
    handles = [Line2D([], [], color="black", label="training loss"),
               Line2D([], [], color="black", linestyle="--", marker="o", markersize=4, label="validation loss")]
    single = len(plotted) == 1 and len(next(iter(plotted.values()))) == 1  # the title names it
    if not single:
        handles += [Line2D([], [], color=colours[label], linewidth=4, label=label) for label in plotted]
    handles += draw_baselines(losses, baseline, colours)
    losses.legend(handles=handles, fontsize=8, loc="upper right")
    losses.set(ylabel="loss (nats per token)", title=title or (
        f"training of {next(iter(plotted))}" if single else "training"))
    losses.grid(True, alpha=0.3)
    rates.set(ylabel="learning rate", xlabel="tokens seen" if x == TOKENS else "optimizer step")
    rates.grid(True, alpha=0.3)
    if x == TOKENS:
        rates.xaxis.set_major_formatter(EngFormatter(sep=""))  # 250k, 1.5M
    save(figure, output)
    return plotted


def draw_baselines(axes, baseline: float | dict[str, float] | None, colours: dict[str, str]) -> list:
    """The unigram baseline as a dotted line: one grey line when there is one value, else one per label in its
    colour. Returns the legend entries."""
    if baseline is None or baseline == {}:
        return []
    values = baseline if isinstance(baseline, dict) else {"": baseline}
    if len(set(values.values())) == 1:
        value = next(iter(values.values()))
        return [axes.axhline(value, color="grey", linestyle=":", linewidth=1.5,
                             label=f"unigram baseline: {value:.3f}")]
    return [axes.axhline(value, color=colours.get(label, "grey"), linestyle=":", linewidth=1.5,
                         label=f"unigram baseline of {label}: {value:.3f}") for label, value in values.items()]
