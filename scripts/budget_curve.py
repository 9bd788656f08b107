"""Does the perplexity study's answer survive a larger budget? The growth ppl(kL) / ppl(L) of a few schemes at
several training budgets, each a `posattn compare` study of its own (finished runs are reused, so the script can be
stopped and run again), then one table and one figure of growth against budget.

    python scripts/budget_curve.py                                  # 150, 300, 600, 1200 steps; 4 schemes; seed 0
    python scripts/budget_curve.py --steps 150,300 --positions alibi none --output-dir runs/budgets-small

The other options are the default study's (tiny preset, L = 128, batch 16, 65,536 evaluation tokens); 1,200 steps
is the budget of `posattn train`'s default run.
"""

import argparse
import os

from hf_posattn import CompareOptions, compare
from hf_posattn.figures.common import pyplot, save
from hf_posattn.files import write_text


def growth_table(studies: dict[int, dict]) -> str:
    """Markdown: one row per budget and scheme, the growth at every evaluation length and the perplexity at L."""
    first = next(iter(studies.values()))
    lengths, seq_len = first["settings"]["lengths"], first["settings"]["seq_len"]
    header = ["steps", "scheme", "ppl(L)"] + [f"ppl({n // seq_len}L) / ppl(L)" for n in lengths[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for steps, study in studies.items():
        for row in study["table"]:
            if row["extension"] is not None:
                continue
            cells = [str(steps), row["label"], f"{row['perplexity'][lengths[0]]:.2f}"]
            cells += [f"{row['growth'][n]:.2f}" if n in row["growth"] else "skipped" for n in lengths[1:]]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_growth(studies: dict[int, dict], output: str) -> str:
    plt = pyplot()
    first = next(iter(studies.values()))
    longest, seq_len = first["settings"]["lengths"][-1], first["settings"]["seq_len"]
    figure, axes = plt.subplots(figsize=(7, 4.5), layout="constrained")
    schemes = [row["label"] for row in first["table"] if row["extension"] is None]
    for scheme in schemes:
        budgets = list(studies)
        growth = [next(row for row in study["table"] if row["label"] == scheme)["growth"].get(longest)
                  for study in studies.values()]
        axes.plot(budgets, growth, "o-", label=scheme)
    axes.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    axes.set(xscale="log", xlabel="training steps (batch 16 x 128 tokens)",
             ylabel=f"ppl({longest // seq_len}L) / ppl(L)",
             title=f"perplexity growth at {longest // seq_len}L against the training budget (L = {seq_len})")
    axes.set_xticks(list(studies), [str(steps) for steps in studies])
    axes.minorticks_off()
    axes.legend()
    return save(figure, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="150,300,600,1200", help="the budgets, in optimizer steps")
    parser.add_argument("--positions", nargs="+", default=["sinusoidal", "rotary", "alibi", "none"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--output-dir", default=os.path.join("runs", "budgets"))
    args = parser.parse_args()
    studies = {}
    for steps in (int(part) for part in args.steps.split(",")):
        studies[steps] = compare(CompareOptions(
            output_dir=os.path.join(args.output_dir, f"steps-{steps}"), positions=args.positions, max_steps=steps,
            seeds=[int(seed) for seed in args.seeds.split(",")]))
    table = growth_table(studies)
    print(table)
    write_text(os.path.join(args.output_dir, "budgets.md"), table + "\n")
    print(f"wrote {plot_growth(studies, os.path.join(args.output_dir, 'budgets.png'))}")


if __name__ == "__main__":
    main()
