"""What a training run reads of a synthetic task: its examples as text (one example a document, with its answer
spans) and as blocks (one example a block, from position 0, padded to the training length, labelled as the task's
loss reads them), in the layout `pack` gives the language model's text, so that the rest of training (the Trainer,
evaluation, the card) is the same for every task.
"""

from .common import EVERY_TOKEN, LOSSES, Task

VALIDATION_EXAMPLES = 256  # the validation loss during training (the study scores exact match itself)


def task_texts(task: Task, seed: int, seq_len: int, train_examples: int):
    """`train_examples` training examples of the run's `seed` (the lengths `task.train_length` draws for `seq_len`)
    and `VALIDATION_EXAMPLES` of `seq_len` tokens from a fixed seed, as a `DatasetDict` with a "text" column and an
    "answers" column (each example's answer spans, `[start, end)` in tokens: one word is one token)."""
    from datasets import Dataset, DatasetDict

    def columns(examples):
        return {"text": [e.text() for e in examples], "answers": [[list(span) for span in e.answers] for e in examples]}

    task.check_length(seq_len)
    return DatasetDict({
        "train": Dataset.from_dict(columns(task.examples(seed, seq_len, train_examples))),
        "validation": Dataset.from_dict(columns(task.examples(0, seq_len, VALIDATION_EXAMPLES, "validation"))),
    })


def example_blocks(texts, tokenizer, seq_len: int, loss: str = EVERY_TOKEN):
    """Every example its own block of `seq_len` tokens, padded at the end, the attention mask hiding the padding.
    The labels are the inputs where the `loss` reads them and -100 elsewhere: every real token (`EVERY_TOKEN`), or
    only the answers' tokens (`ANSWERS`); never the padding. A label is the token predicted there, from the ones
    before it (the model shifts them), so an answer's label is its own token."""
    from datasets import DatasetDict

    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(map(repr, LOSSES))}.")

    def to_blocks(batch):
        encoded = tokenizer(batch["text"], add_special_tokens=False, padding="max_length", max_length=seq_len,
                            truncation=False)
        labels = []
        for ids, mask, spans in zip(encoded["input_ids"], encoded["attention_mask"], batch["answers"]):
            read = mask if loss == EVERY_TOKEN else answer_mask(spans, len(ids))
            labels.append([token if keep else -100 for token, keep in zip(ids, read)])
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    return DatasetDict({split: dataset.map(to_blocks, batched=True, batch_size=1000, remove_columns=["text", "answers"])
                        for split, dataset in texts.items()})


def answer_mask(spans, length: int) -> list[bool]:
    """True at the tokens of the answer spans (`[start, end)`), False elsewhere."""
    keep = [False] * length
    for start, end in spans:
        keep[start:end] = [True] * (end - start)
    return keep
