"""The figures of a synthetic task's study: exact match against evaluation length for every scheme, passkey's
length x depth grids (one panel per scheme), and the lesson the two studies teach together: perplexity that stays
flat past L is not the same as using the context (perplexity growth beside passkey accuracy, per scheme).
"""

from .study import row_style, study_title


def plot_accuracy(study: dict, output: str) -> str:
    """Exact match against length, one line per row of the table (mean over seeds, 95 % interval as error bars); a
    row that did not learn the task at L is drawn faint."""
    from .common import pyplot, save

    plt = pyplot()
    settings = study["settings"]
    lengths, seq_len = settings["lengths"], settings["seq_len"]
    figure, axes = plt.subplots(figsize=(10, 5.5), layout="constrained")
    colours = {}
    for row in study["table"]:
        measured = [n for n in lengths if n in row["exact_match"]]  # a length the model cannot take is skipped
        means = [row["exact_match"][n] for n in measured]
        errors = None
        if row["seeds"] > 1:
            errors = [[m - row["low"][n] for m, n in zip(means, measured)],
                      [row["high"][n] - m for m, n in zip(means, measured)]]
        style = row_style(row, colours)
        if row.get("random_positions"):
            style["linestyle"] = (0, (1, 1))
        axes.errorbar(measured, means, yerr=errors, marker="o", markersize=4, capsize=2, label=row["label"],
                      alpha=1.0 if row["learned"] else 0.35, **style)
    axes.axvline(seq_len, color="grey", linewidth=0.8, linestyle=":")
    axes.set(xscale="log", xlabel="evaluation length (tokens)", ylabel="exact match", ylim=(-0.03, 1.03),
             title=f"{study['task']}: {study['task_description']}\n{study_title(settings)}")
    axes.set_xticks(lengths, [str(n) for n in lengths])
    axes.minorticks_off()
    axes.legend(fontsize=8, loc="best")
    return save(figure, output)


def plot_depth_grid(study: dict, output: str) -> str:
    """Passkey: exact match at every length (rows) and depth of the key (columns), one panel per row of the table."""
    from .common import pyplot, save

    plt = pyplot()
    rows = study["table"]
    lengths = study["settings"]["lengths"]
    depths = sorted(rows[0]["by"][lengths[0]], key=float)
    columns = min(5, len(rows))
    figure, grid = plt.subplots((len(rows) + columns - 1) // columns, columns, squeeze=False,
                                figsize=(2.6 * columns, 2.4 * ((len(rows) + columns - 1) // columns)),
                                layout="constrained")
    image = None
    for axes, row in zip(grid.flat, rows):
        values = [[row["by"].get(n, {}).get(depth, float("nan")) for depth in depths] for n in lengths]
        image = axes.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        axes.set_title(row["label"], fontsize=8)
        axes.set_xticks(range(len(depths)), [f"{float(d):.0%}" for d in depths], fontsize=7)
        axes.set_yticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7)
        axes.set_xlabel("depth of the key", fontsize=7)
        axes.set_ylabel("length", fontsize=7)
    for axes in list(grid.flat)[len(rows):]:
        axes.set_visible(False)
    figure.colorbar(image, ax=grid, shrink=0.8, label="exact match")
    figure.suptitle(f"passkey: exact match by length and depth ({study_title(study['settings'])})", fontsize=10)
    return save(figure, output)


def plot_perplexity_beside_passkey(lm_study: dict, passkey_study: dict, output: str) -> str:
    """Per scheme, the perplexity growth ppl(kL) / ppl(L) of the language-model study (left axis) and the passkey
    exact match at the same multiples of L (right axis): a flat perplexity is not context use."""
    from .common import pyplot, save

    plt = pyplot()
    lm_rows = {row["label"]: row for row in lm_study["table"] if row["extension"] is None
               and not row.get("random_positions")}
    pk_rows = {row["label"]: row for row in passkey_study["table"] if row["extension"] is None
               and not row.get("random_positions")}
    schemes = [name for name in lm_rows if name in pk_rows]
    lm_lengths, pk_lengths = lm_study["settings"]["lengths"], passkey_study["settings"]["lengths"]
    factors = [n // lm_lengths[0] for n in lm_lengths if n // lm_lengths[0] in [m // pk_lengths[0] for m in pk_lengths]]
    figure, grid = plt.subplots(1, len(schemes), figsize=(2.4 * len(schemes), 3.2), sharey=True, squeeze=False,
                                layout="constrained")
    for axes, name in zip(grid[0], schemes):
        growth = [lm_rows[name]["growth"].get(lm_lengths[0] * k) for k in factors]
        accuracy = [pk_rows[name]["exact_match"][pk_lengths[0] * k] for k in factors]
        axes.plot(factors, growth, "o-", color="C0", label="perplexity growth")
        twin = axes.twinx()
        twin.plot(factors, accuracy, "s--", color="C3", label="passkey exact match")
        twin.set_ylim(-0.03, 1.03)
        axes.set_xscale("log", base=2)
        axes.set_xticks(factors, [f"{k}L" for k in factors])
        axes.minorticks_off()
        axes.set_title(name, fontsize=9)
        if name != schemes[-1]:
            twin.set_yticklabels([])
    grid[0][0].set_ylabel("ppl(kL) / ppl(L)", color="C0")
    twin.set_ylabel("passkey exact match", color="C3")
    figure.suptitle("flat perplexity is not context use: perplexity growth (blue) beside passkey accuracy (red)",
                    fontsize=10)
    return save(figure, output)


def lookup_weights(model, tokenizer, examples):
    """Recall as a dictionary lookup: a [layers, heads] tensor, for every head the mean attention weight that the query (the
    key asked again, right before the answer) puts on the pair it must find (its key and the value after it),
    over `examples`. `model` must return attention weights (attn_implementation="eager")."""
    import torch

    totals = None
    for example in examples:
        ids = torch.tensor([tokenizer.convert_tokens_to_ids(list(example.words))], device=model.device)
        with torch.no_grad():
            attentions = model(ids, output_attentions=True).attentions  # layers x [1, heads, T, T]
        weights = torch.stack([layer[0] for layer in attentions])  # [layers, heads, T, T]
        for start, _ in example.answers:
            query = start - 1
            key = example.words.index(example.words[query])  # the pair's key, first in the example
            found = weights[:, :, query, key] + weights[:, :, query, key + 1]
            totals = found if totals is None else totals + found
    return totals / sum(len(example.answers) for example in examples)


def plot_lookup(rows: dict[str, dict], seq_len: int, output: str) -> str:
    """One panel per scheme: each head's attention from the query onto the pair it must find (`lookup_weights`),
    at every length measured (a length inside training, one past it)."""
    from .common import pyplot, save

    plt = pyplot()
    figure, grid = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), sharey=True, squeeze=False,
                                layout="constrained")
    for axes, (label, by_length) in zip(grid[0], rows.items()):
        for index, (length, weights) in enumerate(by_length.items()):
            flat = weights.flatten().tolist()
            axes.bar([i + 0.4 * index for i in range(len(flat))], flat, width=0.4,
                     label=f"{length} tokens ({length // seq_len}L)")
        layers, heads = next(iter(by_length.values())).shape
        axes.set_xticks([i + 0.2 for i in range(layers * heads)],
                        [f"{layer}.{head}" for layer in range(layers) for head in range(heads)], fontsize=7)
        axes.set(title=label, xlabel="layer.head", ylim=(0, 1))
        axes.legend(fontsize=7)
    grid[0][0].set_ylabel("attention from the query to its pair")
    figure.suptitle("recall as a lookup: how much each head's query finds its key-value pair", fontsize=10)
    return save(figure, output)
