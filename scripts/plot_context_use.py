"""Flat perplexity is not context use: per scheme, the perplexity growth ppl(kL) / ppl(L) of a language-model study
beside the passkey exact match of a passkey study at the same multiples of their training lengths.

    python scripts/plot_context_use.py runs/compare runs/compare-passkey --output docs/context-use.png

Each argument is a study folder (or its compare.json); the schemes both studies trained are drawn.
"""

import argparse

from hf_posattn.figures.study import read_study
from hf_posattn.figures.tasks import plot_perplexity_beside_passkey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lm_study", help="a `posattn compare` study folder (--task lm)")
    parser.add_argument("passkey_study", help="a `posattn compare --task passkey` study folder")
    parser.add_argument("--output", default="context-use.png", help="the PNG to write")
    args = parser.parse_args()
    lm, passkey = read_study(args.lm_study), read_study(args.passkey_study)
    if lm["settings"].get("task", "lm") != "lm" or passkey["settings"].get("task") != "passkey":
        raise SystemExit("give a language-model study, then a passkey study")
    print(f"wrote {plot_perplexity_beside_passkey(lm, passkey, args.output)}")


if __name__ == "__main__":
    main()
