"""Fine-tuning with the tools users already have: LoRA through PEFT (train, save the adapter, reload it, merge it), and
the Trainer's label smoothing, which must score position t against token t + 1."""

import pytest
import torch
from conftest import LORA_TARGETS, random_ids, tiny_lm
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Trainer, TrainingArguments

import hf_posattn


def easy_blocks(count=32, length=16):
    """Blocks of an 8-token language, which a tiny model learns in a few steps."""
    return [{"input_ids": ids, "labels": ids} for ids in random_ids(count, length) % 8 + 3]


def training_args(tmp_path, **overrides) -> TrainingArguments:
    fields = dict(output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=8, learning_rate=1e-2,
                  logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, seed=0)
    return TrainingArguments(**{**fields, **overrides})


def test_lora_trains_saves_reloads_and_merges(tmp_path):
    lora = LoraConfig(r=4, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(tiny_lm("alibi").train(), lora)
    trainer = Trainer(model=model, args=training_args(tmp_path / "run", max_steps=20, learning_rate=5e-2),
                      train_dataset=easy_blocks())
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0] - 0.1, losses  # the projections alone learn slowly: 4.58 -> 4.39 here

    model.save_pretrained(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    ids = random_ids(2, 10)
    with torch.no_grad():
        adapted = model.eval()(input_ids=ids).logits
        base = tiny_lm("alibi")  # the same initial weights: LoRA left them as they were
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(input_ids=ids).logits, adapted, rtol=0, atol=1e-6)
        merged = reloaded.merge_and_unload()
        assert type(merged) is hf_posattn.PosAttnForCausalLM
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, rtol=0, atol=1e-5)
        assert (merged(input_ids=ids).logits - tiny_lm("alibi")(ids).logits).abs().max() > 1e-2  # it learned


def smoothed_loss(logits, labels, epsilon):
    """Label smoothing by hand: (1 - e) x cross-entropy + e x the mean of -log p over the vocabulary and tokens."""
    log_probs = logits.log_softmax(-1)
    nll = -log_probs.gather(-1, labels[..., None]).mean()
    return (1 - epsilon) * nll + epsilon * -log_probs.mean()


def test_label_smoothing_scores_the_next_token(tmp_path):
    """The Trainer takes the labels away from the model and smooths the loss itself, shifting them only for the
    models its causal-LM name table lists: `PosAttnForCausalLM` is listed, so position t is scored on token t + 1."""
    model = tiny_lm("rotary")
    trainer = Trainer(model=model, args=training_args(tmp_path, label_smoothing_factor=0.1))
    batch = {"input_ids": random_ids(2, 12), "labels": random_ids(2, 12)}
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(batch["input_ids"]).logits
    shifted = smoothed_loss(logits[:, :-1], batch["labels"][:, 1:], 0.1)
    unshifted = smoothed_loss(logits, batch["labels"], 0.1)
    assert loss.item() == pytest.approx(shifted.item(), rel=1e-5)
    assert abs(shifted.item() - unshifted.item()) > 1e-3  # the test can tell the two apart

    # With a smoothing factor near 0 it is the model's own loss, which shifts inside.
    trainer = Trainer(model=model, args=training_args(tmp_path, label_smoothing_factor=1e-9))
    with torch.no_grad():
        assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)
