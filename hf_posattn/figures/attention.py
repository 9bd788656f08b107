"""`posattn plot-attention`: the attention weights of a model on a text, one heat map per layer and head, tokens on
both axes; bertviz's interactive head view with `--html`.
"""

import torch

from ..data.tokenizers import check_known_tokens
from ..files import write_text
from .common import pyplot, save

ATTENTION_CELL = 2.5  # inches per attention heat map in the grid, at least


ATTENTION_CELL_PER_TOKEN = 0.18  # ... and this much per token, so that labels stay readable


ZOOM_SIZE = 8.0  # inches: one head


MAX_ATTENTION_TOKENS = 64


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
    run the eager kernel (`attn_implementation="eager"`), the only one that returns the weights. Text the tokenizer
    does not know is refused (`check_known_tokens`)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the text is empty: give some text to look at, e.g. 'ROMEO: But soft'.")
    check_known_tokens(tokenizer, ids, "the text")
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
