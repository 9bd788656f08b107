"""Half-precision inference: bf16 and fp16 forward passes and generation stay finite and close to float32 for every
scheme and kernel, however the model was made half (masked scores take the dtype's minimum, never an infinity that
turns a fully masked row into NaN; ALiBi's bias does not overflow over long inputs). Training in bf16 is in
tests/e2e/test_precision.py."""

import pytest
import torch
from conftest import SCHEMES, made, matrix, random_ids, tiny_lm

HALF = [torch.bfloat16, torch.float16]


# Half-precision logits against float32 ones, at logits of this tiny model's size (about 0.1).
TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 3e-3}


def left_padded(length):
    """Two rows, the first left-padded by 4: its padded queries see no real key at all (a fully masked row)."""
    ids = random_ids(2, length)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    return ids, mask


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("scheme", SCHEMES)
@torch.no_grad()
def test_half_precision_forward_and_generation_are_finite(scheme, attn, dtype):
    ids, mask = left_padded(12)
    reference = tiny_lm(scheme, attn)(ids, attention_mask=mask).logits
    model = tiny_lm(scheme, attn).to(dtype)
    logits = model(ids, attention_mask=mask).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    real = mask.bool()
    torch.testing.assert_close(logits[real].float(), reference[real], rtol=0, atol=TOLERANCE[dtype])
    for cache in ("dynamic", "static"):  # static: the cache's unwritten slots are masked too
        out = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, cache_implementation=cache,
                             output_scores=True, return_dict_in_generate=True)
        assert all(torch.isfinite(scores).all() for scores in out.scores), cache


@pytest.mark.parametrize("dtype", HALF, ids=str)
@torch.no_grad()
def test_alibi_bias_and_mask_do_not_overflow_over_long_inputs(dtype):
    """ALiBi adds -slope x distance to scores that the mask sets to the dtype's minimum; in fp16 (minimum -65504) the
    sum overflows to -inf if it is taken in half precision. Eager attention adds them in float32, sdpa selects
    between bias and minimum: 300 tokens, weights that still sum to 1 on every row, padded ones included."""
    ids, mask = left_padded(300)
    assert torch.isfinite(tiny_lm("alibi", "sdpa").to(dtype)(ids, attention_mask=mask).logits).all()
    out = tiny_lm("alibi", "eager").to(dtype)(ids, attention_mask=mask, output_attentions=True)
    assert torch.isfinite(out.logits).all()
    for weights in out.attentions:
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.float().sum(-1), torch.ones(weights.shape[:-1]), rtol=0, atol=1e-2)


DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("scheme, dtype, maker", matrix(DTYPES))
@torch.no_grad()
def test_every_scheme_runs_and_generates_in_every_precision_however_made(scheme, dtype, maker, saved_models):
    ids, mask = left_padded(12)
    reference = tiny_lm(scheme)(ids, attention_mask=mask).logits
    model, autocast = made(scheme, dtype, maker, saved_models)
    with autocast:
        logits = model(ids, attention_mask=mask).logits
        out = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, output_scores=True,
                             return_dict_in_generate=True)
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    real = mask.bool()
    torch.testing.assert_close(logits[real].float(), reference[real], rtol=0,
                               atol=TOLERANCE.get(dtype, 1e-5) * (2 if maker == "autocast" else 1))
    assert out.sequences.shape == (2, 16) and all(torch.isfinite(scores).all() for scores in out.scores)
    assert out.past_key_values.get_seq_length() == 15  # the cache was used: every token but the last is in it
