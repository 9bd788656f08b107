"""Measure how far xPos computes right in each dtype: the largest position past which its logits are wrong.

xPos scales a query at position m by ζ^(m/γ) and a key at n by ζ^(-n/γ); their product depends on m - n alone, as
the rotation does. So an input placed at positions P .. P + 31 must give the logits it gives at 0 .. 31: any
difference is numerical. This script moves a block of 32 tokens along the positions (no long input is needed, so it
runs in seconds on a CPU) and reports, per dtype, the first P at which the logits are NaN or differ from those at 0
by more than `TOLERANCE`, and the error just below and past it, with the model's refusal turned off. The limit that
`XPosPositions.numeric_max_length` states (and the model enforces) must lie below: the script checks it does.

    python scripts/xpos_range.py [--device cuda]
"""

import argparse
from unittest import mock

import torch

from hf_posattn import PosAttnConfig, PosAttnForCausalLM
from hf_posattn.model.positional import XPosPositions

BLOCK = 32
TOLERANCE = 0.5  # logits of this model span about ±10: a tenth of a logit is visible in the probabilities


def model_in(dtype, device):
    torch.manual_seed(0)
    config = PosAttnConfig(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=256, max_position_embeddings=512, position_embedding_type="xpos",
                           initializer_range=0.2)  # sharp attention: a wrong score shows in the logits
    return PosAttnForCausalLM._from_config(config, attn_implementation="eager").to(device, dtype).eval(), config


@torch.no_grad()
def error_at(model, ids, reference, start: int) -> float:
    positions = torch.arange(start, start + BLOCK, device=ids.device)[None]
    logits = model(ids, position_ids=positions).logits.float()
    return float("nan") if not logits.isfinite().all() else (logits - reference).abs().max().item()


def first_wrong(model, ids, reference, high: int = 2**17) -> int:
    """The smallest start at which the block's logits are wrong (NaN or off by more than TOLERANCE), by bisection
    between 0 (right) and `high` (wrong)."""
    def wrong(start):
        error = error_at(model, ids, reference, start)
        return not error <= TOLERANCE

    low = 0
    assert wrong(high), "right even at the top of the search"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if wrong(middle) else (middle, high)
    return high


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ids = torch.randint(3, 256, (2, BLOCK), generator=torch.Generator().manual_seed(0)).to(args.device)
    exact, _ = model_in(torch.float64, args.device)
    with torch.no_grad():
        reference = exact(ids, position_ids=torch.arange(BLOCK, device=args.device)[None]).logits.float()
    print(f"device {args.device}; block of {BLOCK} tokens; wrong = NaN or off by more than {TOLERANCE}")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        model, config = model_in(dtype, args.device)
        stated = XPosPositions.numeric_max_length(config, dtype)
        with mock.patch.object(XPosPositions, "numeric_max_length", classmethod(lambda cls, config, dtype: None)):
            start = first_wrong(model, ids, reference)
            near = {offset: error_at(model, ids, reference, start + offset) for offset in (-512, -1, 0, 512)}
        last = start + BLOCK - 1  # the largest position of the first wrong block
        print(f"{str(dtype):15} first wrong block at {start} (largest position {last}); error at start "
              + ", ".join(f"{offset:+d}: {error:.3g}" for offset, error in near.items())
              + f"; stated limit {stated} positions")
        assert stated <= last, f"{dtype}: the stated limit {stated} lets wrong logits through"


if __name__ == "__main__":
    main()
