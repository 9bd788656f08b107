"""Half precision: bf16 and fp16 forward passes and generation stay finite for every scheme and kernel (masked scores
take the dtype's minimum, never an infinity that turns a fully masked row into NaN), and bf16 training through the
Trainer works on CPU."""

import math

import pytest
import torch
from conftest import SCHEMES, random_ids, tiny_config, tiny_lm
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

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


# ---- every scheme in every precision, however the model was made ----

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# How a model comes to run in a dtype: built in it, loaded in it, cast to it, or kept in float32 under autocast. A
# table a scheme computes at construction (sinusoidal waves, rotary frequencies, ALiBi slopes) must follow each way.
MAKERS = ["from_config", "from_pretrained", "to", "autocast"]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """One saved float32 model per scheme, for `from_pretrained(dtype=...)`."""
    root = tmp_path_factory.mktemp("saved")
    for scheme in SCHEMES:
        tiny_lm(scheme).save_pretrained(root / scheme)
    return root


def made(scheme: str, dtype: torch.dtype, maker: str, saved_models, attn: str = "sdpa"):
    """The tiny model of `scheme` made to run in `dtype` the way `maker` says, and the autocast context it runs
    under (only "autocast" enables it)."""
    torch.manual_seed(0)
    if maker == "from_config":
        model = AutoModelForCausalLM.from_config(tiny_config(scheme), dtype=dtype, attn_implementation=attn)
    elif maker == "from_pretrained":
        model = AutoModelForCausalLM.from_pretrained(saved_models / scheme, dtype=dtype, attn_implementation=attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(saved_models / scheme, attn_implementation=attn)
        if maker == "to":
            model = model.to(dtype)
    autocast = torch.autocast("cpu", dtype=dtype, enabled=maker == "autocast")
    return model.eval(), autocast


def matrix(dtypes):
    """(scheme, dtype, maker) cases; autocast to float32 is no autocast, so float32 has no autocast case."""
    return [pytest.param(scheme, dtype, maker, id=f"{scheme}-{str(dtype)[6:]}-{maker}")
            for scheme in SCHEMES for dtype in dtypes for maker in MAKERS
            if not (maker == "autocast" and dtype == torch.float32)]


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


@pytest.mark.parametrize("scheme, dtype, maker", matrix([torch.bfloat16]))
def test_every_scheme_takes_a_bf16_trainer_step_however_made(scheme, dtype, maker, saved_models, tmp_path):
    """One optimizer step through the Trainer with `bf16=True` (autocast), on a model built, loaded or cast in bf16
    or kept in float32: a finite loss, and weights that moved."""
    model, _ = made(scheme, dtype, maker, saved_models)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    blocks = [{"input_ids": ids, "labels": ids} for ids in random_ids(8, 16)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8,
                             learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             bf16=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=blocks)
    loss = trainer.train().training_loss
    assert math.isfinite(loss)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
