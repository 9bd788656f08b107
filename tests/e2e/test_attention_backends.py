"""The attention backends: under flex_attention (which compiles its kernels) cache steps equal a full forward and
left-padded rows equal rows alone, the checks tests/fast/test_model.py runs with eager and sdpa; and eager, sdpa and
flex_attention give the same logits for every scheme."""

import pytest
import torch
from conftest import (
    BACKENDS,
    SCHEMES,
    check_cache_steps_equal_full_forward,
    check_left_padding_matches_rows_alone,
    pad_left,
    random_ids,
    tiny_lm,
)

pytestmark = pytest.mark.usefixtures("no_grad")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flex_cache_steps_equal_full_forward(scheme):
    check_cache_steps_equal_full_forward(scheme, "flex_attention")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flex_left_padding_matches_rows_alone(scheme):
    check_left_padding_matches_rows_alone(scheme, "flex_attention")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_backends_agree(scheme):
    rows = [random_ids(1, n, seed=n)[0] for n in (5, 11)]
    ids, mask = pad_left(rows)
    logits = {attn: tiny_lm(scheme, attn)(ids, attention_mask=mask).logits for attn in BACKENDS}
    real = mask.bool()
    for attn in ("sdpa", "flex_attention"):
        torch.testing.assert_close(logits[attn][real], logits["eager"][real], rtol=0, atol=1e-5, msg=attn)
