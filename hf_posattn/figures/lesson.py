"""The lesson's figures: the dictionary lookup, the heads' attention from the word that predicts the next one, and
attention against a GRU (time, achieved FLOP/s, work and memory by sequence length).
"""

import itertools

import torch

from ..common import hardware
from .common import pyplot, save


def draw_lookup(output, french, english, keys, weight_on_match, blend_query: str, blend_temperature: float,
                blend_weights, blended) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(16, 4), layout="constrained")
    scores = (keys @ keys.T).numpy()
    axes[0].imshow(scores, cmap="Blues", vmin=0, vmax=1)
    axes[0].set_xticks(range(len(french)), french)
    axes[0].set_yticks(range(len(french)), french)
    for (row, column), value in zip(itertools.product(range(len(french)), repeat=2), scores.ravel()):
        axes[0].text(column, row, f"{value:g}", ha="center", va="center", color="white" if value else "black")
    axes[0].set(title="one-hot: Q·Kᵀ = I, so Q·Kᵀ·V = V exactly", xlabel="key", ylabel="query")

    temperatures = list(weight_on_match)
    axes[1].semilogx(temperatures, list(weight_on_match.values()), "o-")
    axes[1].axhline(1 / len(french), color="gray", linestyle=":", label="uniform: 1/4")
    axes[1].invert_xaxis()
    axes[1].set(title="weight on the matching key vs temperature", xlabel="temperature T (lower: sharper)",
                ylabel="softmax weight", ylim=(0, 1.05))
    axes[1].legend(fontsize=8)

    axes[2].bar(french, blend_weights.numpy(), color="tab:orange")
    axes[2].set(title=f"query '{blend_query}' (not a key): weights, T = {blend_temperature}", ylabel="softmax weight",
                ylim=(0, 1))
    axes[3].bar(english, blended.numpy(), color="tab:green")
    axes[3].set(title="retrieved value: cat and dog, blended", ylabel="weight in the value", ylim=(0, 1))
    return save(figure, output)


def draw_context(output: str, shown: list[dict], position: str, deciding_word: int) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(2, len(shown), figsize=(4 * len(shown), 8), layout="constrained",
                                gridspec_kw={"height_ratios": [3, 1]})
    for column, case in enumerate(shown):
        last = case["last_token_attention"]
        rows = last.reshape(-1, last.shape[-1]).numpy()
        ax = axes[0][column]
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(case["labels"])), case["labels"], rotation=90)
        ax.set_yticks(range(len(rows)), [f"L{layer} H{head}" for layer in range(last.shape[0])
                                         for head in range(last.shape[1])], fontsize=7)
        ax.add_patch(plt.Rectangle((deciding_word - 0.5, -0.5), 1, len(rows), fill=False, edgecolor="tab:red",
                                   linewidth=2))
        ax.set_title(f"'{case['prompt']}' → {case['word']}\nlast token's attention (red: deciding word)",
                     fontsize=9)
        words = list(case["top"])
        axes[1][column].barh(words[::-1], [case["top"][w] for w in words][::-1], color="tab:purple")
        axes[1][column].set(xlim=(0, 1), xlabel="softmax probability of the next word")
    figure.suptitle(f"context decides the next word: a tiny {position} hf_posattn model", fontsize=11)
    return save(figure, output)


ATTENTION_STYLE = {"color": "tab:blue", "marker": "o", "label": "self-attention (1 layer)"}


RNN_STYLE = {"color": "tab:red", "marker": "s", "label": "GRU (1 layer)"}


def mark(axes, length, text: str) -> None:
    """A dotted vertical line at a crossover, labelled along it, on a white box so that no curve hides the text."""
    axes.axvline(length, color="gray", linestyle=":", linewidth=1.2)
    axes.annotate(text, (length, 0.97), xycoords=("data", "axes fraction"), rotation=90, ha="center", va="top",
                  fontsize=8, color="dimgray", bbox={"boxstyle": "round,pad=0.2", "facecolor": "white",
                                                     "edgecolor": "none", "alpha": 0.8})


def shade_timed(axes, lengths) -> None:
    """On the panels drawn from formulas, the lengths that were timed."""
    axes.axvspan(min(lengths), max(lengths), color="gray", alpha=0.1, label="lengths timed")


def draw(output: str, rows: list[dict], costs: dict, cross: dict, verdict: str, hidden: int, heads: int, batch: int,
         repeats: int, device: torch.device, attn_implementation: str, backward: bool) -> str:
    """The parallel demo's four panels from its measured `rows`, the arithmetic and memory of each side (`costs`),
    where the curves cross (`cross`) and what the timings say (`verdict`), all computed by the demo."""
    from .common import pyplot, save

    plt = pyplot()
    lengths = [row["length"] for row in rows]
    what = "forward + backward" if backward else "forward"
    figure, ((time_axes, speed_axes), (work_axes, memory_axes)) = plt.subplots(2, 2, figsize=(13, 9.5),
                                                                                layout="constrained")

    time_axes.loglog(lengths, [row["attention_ms"] for row in rows], **ATTENTION_STYLE)
    time_axes.loglog(lengths, [row["rnn_ms"] for row in rows], **RNN_STYLE)
    for length, attention_slower in cross["time"]:
        mark(time_axes, length, f"{'GRU' if attention_slower else 'attention'} faster past T ≈ {length:.0f}")
    time_axes.set(title=f"time per {what} (median of {repeats})\n{verdict}",
                  xlabel="sequence length T", ylabel="milliseconds")
    time_axes.legend(fontsize=8, loc="upper left")

    speed_axes.semilogx(lengths, [row["attention_gflop_per_s"] for row in rows], **ATTENTION_STYLE)
    speed_axes.semilogx(lengths, [row["rnn_gflop_per_s"] for row in rows], **RNN_STYLE)
    speed_axes.set(title="why: attention is 1 step of large matrix products,\nthe GRU T small steps, each waiting "
                         "for the one before", xlabel="sequence length T", ylabel="achieved GFLOP/s",
                   ylim=(0, 1.4 * max(max(row["attention_gflop_per_s"], row["rnn_gflop_per_s"]) for row in rows)))
    speed_axes.legend(fontsize=8, title="sequential steps per layer:\nattention 1, GRU T", title_fontsize=8,
                      loc="upper left", ncols=2)  # one row: above the points, in the headroom of the y axis

    grid, attention_work, rnn_work = costs["work"]
    work_axes.loglog(grid, [flops / 1e9 for flops in attention_work], color="tab:blue",
                     label="attention: 8·T·H² + 2·T²·H (causal: half the T² pairs)")
    work_axes.loglog(grid, [flops / 1e9 for flops in rnn_work], color="tab:red", label="GRU: 12·T·H²")
    shade_timed(work_axes, lengths)
    mark(work_axes, cross["work"], f"more arithmetic than the GRU past T = 2H = {2 * hidden}")
    work_axes.set(title="the other side: attention's work grows as T², the GRU's as T", xlabel="sequence length T",
                  ylabel=f"GFLOP per {what} (batch {batch})")
    work_axes.legend(fontsize=8, loc="upper left")

    grid, scores, states = costs["memory"]
    memory_axes.loglog(grid, [size / 2**20 for size in scores], color="tab:blue",
                       label="attention score matrix: batch·heads·T² floats")
    memory_axes.loglog(grid, [size / 2**20 for size in states], color="tab:red",
                       label="GRU state: batch·H floats, whatever T")
    if rows[0]["attention_peak_mb"] is not None:
        memory_axes.loglog(lengths, [row["attention_peak_mb"] for row in rows], "o", color="tab:blue",
                           label="attention's peak memory, measured")
    shade_timed(memory_axes, lengths)
    mark(memory_axes, cross["memory"], f"scores outgrow the state: T ≈ {cross['memory']:.0f}")
    memory_axes.set(title="memory: the T x T scores against the GRU's fixed state", xlabel="sequence length T",
                    ylabel="MB")
    memory_axes.legend(fontsize=8, loc="lower right")

    figure.suptitle(f"Self-attention computes all T positions at once; an RNN takes T steps, one after another\n"
                    f"hf_posattn attention ({attn_implementation}, {heads} head{'s' * (heads > 1)}) vs torch.nn.GRU, "
                    f"hidden {hidden}, batch {batch}, {what}, float32 · {hardware(device=device)}", fontsize=11)
    return save(figure, output)
