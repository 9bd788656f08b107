"""Half precision: bf16 and fp16 forward passes and generation stay finite for every scheme and kernel (masked scores
take the dtype's minimum, never an infinity that turns a fully masked row into NaN), and bf16 training through the
Trainer works on CPU."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from conftest import SCHEMES, random_ids, tiny_lm


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


def test_bf16_training_through_the_trainer_on_cpu(tmp_path):
    """`bf16=True` on CPU: the Trainer runs forward passes under bf16 autocast (seen at the LM head), keeps float32
    weights, and the loss goes down."""
    model = tiny_lm("rotary").train()
    seen = set()
    model.lm_head.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    blocks = [{"input_ids": ids, "labels": ids} for ids in random_ids(32, 16, low=3) % 8 + 3]  # an easy language
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=8, per_device_train_batch_size=8, learning_rate=1e-2,
                             logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, bf16=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=blocks)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert seen == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert losses[-1] < 0.7 * losses[0], losses
