"""What a training run reads of a synthetic task: its examples as text (one example a document) and as blocks (one
example a block, from position 0, padded to the training length), in the layout `pack` gives the language model's
text, so that the rest of training (the Trainer, evaluation, the card) is the same for every task.
"""

from .common import Task

VALIDATION_EXAMPLES = 256  # the validation loss during training (the study scores exact match itself)


def task_texts(task: Task, seed: int, seq_len: int, train_examples: int):
    """`train_examples` training examples of the run's `seed` (the lengths `task.train_length` draws for `seq_len`)
    and `VALIDATION_EXAMPLES` of `seq_len` tokens from a fixed seed, as a `DatasetDict` with a "text" column."""
    from datasets import Dataset, DatasetDict

    task.check_length(seq_len)
    return DatasetDict({
        "train": Dataset.from_dict({"text": [e.text() for e in task.examples(seed, seq_len, train_examples)]}),
        "validation": Dataset.from_dict(
            {"text": [e.text() for e in task.examples(0, seq_len, VALIDATION_EXAMPLES, "validation")]}),
    })


def example_blocks(texts, tokenizer, seq_len: int):
    """Every example its own block of `seq_len` tokens, padded at the end; the labels are the inputs with the
    padding left out of the loss (-100), and the attention mask hides it."""
    from datasets import DatasetDict

    def to_blocks(batch):
        encoded = tokenizer(batch["text"], add_special_tokens=False, padding="max_length", max_length=seq_len,
                            truncation=False)
        labels = [[token if keep else -100 for token, keep in zip(ids, mask)]
                  for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}

    return DatasetDict({split: dataset.map(to_blocks, batched=True, batch_size=1000, remove_columns=["text"])
                        for split, dataset in texts.items()})
