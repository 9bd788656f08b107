"""Training with the HF Trainer, gradient checkpointing, and the text-generation pipeline with a real tokenizer."""

import pytest
import torch
from conftest import SCHEMES, random_ids, tiny_lm
from transformers import Trainer, TrainingArguments, logging, pipeline
from transformers.testing_utils import CaptureLogger

from hf_posattn.data.tokenizers import train_tokenizer

TEXT = (
    "Attention is a soft dictionary lookup: a query is compared with every key, softmax turns the scores into "
    "weights, and the output is the weighted sum of the values. Positional encodings tell the model where each "
    "token is, with sines and cosines of the position, learned vectors, rotations or linear biases. "
) * 20


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer trained here, offline, with `tokenizers`."""
    return train_tokenizer([TEXT], vocab_size=300)


def blocks(tokenizer, length=32):
    ids = tokenizer(TEXT)["input_ids"]
    return [{"input_ids": ids[i : i + length], "labels": ids[i : i + length]} for i in range(0, len(ids) - length, length)]


@pytest.mark.parametrize("scheme", ["sinusoidal", "alibi"])
def test_trainer_lowers_the_loss(scheme, tokenizer, tmp_path):
    model = tiny_lm(scheme, vocab_size=len(tokenizer)).train()
    data = blocks(tokenizer)
    batch = {k: torch.tensor([row[k] for row in data[:8]]) for k in ("input_ids", "labels")}
    with torch.no_grad():
        before = model.eval()(**batch).loss.item()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=150,
        per_device_train_batch_size=8,
        learning_rate=5e-3,
        warmup_steps=10,
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    Trainer(model=model.train(), args=args, train_dataset=data).train()
    with torch.no_grad():
        after = model.eval()(**batch).loss.item()
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradient_checkpointing_gives_the_same_gradients(scheme, reentrant):
    """Both kinds of checkpointing; the reentrant kind sees only positional tensors, so a learned score bias shared by
    every layer (T5, KERPLE, FIRE) must reach each layer as one."""
    ids = random_ids(2, 12)

    def gradients(checkpointing):
        model = tiny_lm(scheme).train()
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": reentrant})
        model(ids, labels=ids).loss.backward()
        return {name: p.grad for name, p in model.named_parameters()}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_text_generation_pipeline(scheme, tokenizer):
    model = tiny_lm(scheme, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with CaptureLogger(logging.get_logger("transformers.pipelines.base")) as captured:
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
        outputs = generator(["Attention is", "Positional encodings tell the"], max_new_tokens=8, do_sample=False)
    assert "not supported" not in captured.out
    assert outputs[0][0]["generated_text"].startswith("Attention is")
    assert len(outputs[1][0]["generated_text"]) > len("Positional encodings tell the")
    # The pipeline's batched (left-padded) greedy text equals each prompt run alone.
    alone = generator("Positional encodings tell the", max_new_tokens=8, do_sample=False)
    assert alone[0]["generated_text"] == outputs[1][0]["generated_text"]
