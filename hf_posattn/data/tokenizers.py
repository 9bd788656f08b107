"""Tokenizers: a byte-level BPE tokenizer trained offline on the training text (the `tokenizers` library, wrapped as a
transformers `PreTrainedTokenizerFast`), and the packing of documents into blocks of the training length.
"""

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .. import arguments
from ..common import option

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
# Text of which the tokenizer reads more than this share as its unknown token is refused: a model trained, scored or
# prompted with it would read <unk> tokens, not the text (a synthetic task's word-level tokenizer given prose). A
# byte-level BPE has no unknown token: any text passes.
MOST_UNKNOWN = 0.5


@arguments.checked(texts=arguments.texts, vocab_size=arguments.integer)
def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most `vocab_size` tokens (fewer when the text has fewer distinct merges), trained on
    `texts` (one string is one text)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def has_tokenizer(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "tokenizer.json"))


def encode_documents(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each document followed by the end-of-text token, which marks where a document stops. Documents
    are longer than the model's input (`model_max_length`): they are cut into blocks later, so no warning. Text the
    tokenizer does not know is refused (`check_known_tokens`)."""
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    check_known_tokens(tokenizer, [token for ids in encoded for token in ids], "the text")
    return [ids + [tokenizer.eos_token_id] for ids in encoded]


def check_known_tokens(tokenizer, ids: list[int], what: str) -> None:
    """Refuse `what`, read by `tokenizer` as `ids`, when most of it is the tokenizer's unknown token (`MOST_UNKNOWN`):
    the one check of text before a model trains on it, is scored on it or continues it."""
    if tokenizer.unk_token_id is None or not ids:
        return
    share = ids.count(tokenizer.unk_token_id) / len(ids)
    if share <= MOST_UNKNOWN:
        return
    from .tasks import LANGUAGE_MODELLING, TASKS, made_for, made_for_text

    tasks = made_for(tokenizer)
    if tasks == (LANGUAGE_MODELLING,):
        words, instead = "its words are not this text's", "Give text of the kind the tokenizer was trained on"
    else:
        words = f"it is the tokenizer of {made_for_text(tasks)}, which knows {len(tokenizer)} words only"
        instead = (f"Give text in the task's own words ({', '.join(TASKS[tasks[0]].words[:6])}, ...), or a model "
                   f"trained on text")
    raise ValueError(f"{what} reads as {tokenizer.unk_token} (unknown) for {share:.0%} of its {len(ids):,} tokens: "
                     f"{words}, so a model would read {tokenizer.unk_token}, not the text. {instead}.")


def split_blocks(ids: list[int], length: int) -> list[list[int]]:
    """Consecutive, non-overlapping blocks of `length` tokens; the remainder shorter than a block is dropped."""
    return [ids[start : start + length] for start in range(0, len(ids) - length + 1, length)]


def pack(texts, tokenizer, seq_len: int):
    """Tokenise every document of `texts` (a `DatasetDict` of "text") with an end-of-text token after each, join
    them and cut the stream into blocks of `seq_len` tokens; the labels are the inputs (the model shifts them)."""
    from datasets import DatasetDict

    def to_blocks(batch):
        stream = [token for ids in encode_documents(tokenizer, batch["text"]) for token in ids]
        blocks = split_blocks(stream, seq_len)
        return {"input_ids": blocks, "labels": [list(block) for block in blocks]}

    # Up to 1000 documents per stream (all of the embedded corpus's splits: the blocks `evaluation` cuts); the tail
    # of each stream shorter than a block is dropped.
    blocks = DatasetDict({
        split: dataset.map(to_blocks, batched=True, batch_size=1000, remove_columns=dataset.column_names)
        for split, dataset in texts.items()
    })
    for split, dataset in blocks.items():
        if len(dataset) == 0:
            raise ValueError(
                f"the {split} text is shorter than one block of {option('seq_len', seq_len)} tokens: give more "
                f"text, or a smaller {option('seq_len')}."
            )
    return blocks
