"""Half precision: bf16 and fp16 forward passes and generation stay finite for every scheme and kernel (masked scores
take the dtype's minimum, never an infinity that turns a fully masked row into NaN), and bf16 training through the
Trainer works on CPU."""

import math

import pytest
import torch
from conftest import made, matrix, random_ids, tiny_lm
from transformers import Trainer, TrainingArguments


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
