"""The model itself: Auto classes, caches, padding, attention backends, outputs, segments and positions."""

import pytest
import torch
from conftest import (
    BACKENDS,
    SCHEMES,
    pad_left,
    random_ids,
    tiny_lm,
)

# The fast tier's checks of caches and padding, run here under flex_attention, which compiles its kernels.
from fast.test_model import test_cache_steps_equal_full_forward as cache_steps_equal_full_forward
from fast.test_model import test_left_padding_matches_rows_alone as left_padding_matches_rows_alone

pytestmark = pytest.mark.usefixtures("no_grad")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flex_cache_steps_equal_full_forward(scheme):
    cache_steps_equal_full_forward(scheme, "flex_attention")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flex_left_padding_matches_rows_alone(scheme):
    left_padding_matches_rows_alone(scheme, "flex_attention")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_backends_agree(scheme):
    rows = [random_ids(1, n, seed=n)[0] for n in (5, 11)]
    ids, mask = pad_left(rows)
    logits = {attn: tiny_lm(scheme, attn)(ids, attention_mask=mask).logits for attn in BACKENDS}
    real = mask.bool()
    for attn in ("sdpa", "flex_attention"):
        torch.testing.assert_close(logits[attn][real], logits["eager"][real], rtol=0, atol=1e-5, msg=attn)
