"""What every synthetic task shares: the example format, the word-level tokenizer, and the interface the study and
training read.

A task writes its examples as words, one word per token, so that "length" means the same thing to the generator,
the tokenizer and the model. An example is the whole sequence the model reads, from its `<bos>` to its last answer
word, with the spans of it that are answers:

    words    <bos> ... what is the pass key ? the pass key is 7 2 9 1 4
    answers                                                    [-------]      (start, end) into `words`

Training reads the words, one example a block from position 0. What the loss reads is the task's (`Task.loss`):
every token, as a language model's, or only the answer words, as the papers train these tasks (Zoology's MQAR labels
are -100 but for the value after each query; Kazemnejad et al. mask the loss to the output). So is how long its
training examples are (`Task.train_lengths`). Evaluation gives the model the words before
an answer, lets it decode the answer greedily (`generate`, KV cache) and scores it by exact match of the answer's
words; an example with several answers (recall) gives each one the true words before it.

Each task has its own vocabulary: the special words below, then the task's words. `word_tokenizer` makes it a
`transformers` tokenizer (a `tokenizers` WordLevel model split on whitespace, wrapped in `PreTrainedTokenizerFast`),
saved with every run of the task.
"""

import random
from dataclasses import dataclass, field

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_WORDS = (PAD, BOS, EOS, UNK)

# What a task's training loss reads: every token (the language model's loss), or only the answers' tokens.
EVERY_TOKEN, ANSWERS = "every token", "answers"
LOSSES = (EVERY_TOKEN, ANSWERS)
# How long a task's training examples are: all L tokens, or drawn uniformly from the shortest the format allows to L.
FULL_LENGTH, UP_TO_L = "L", "up to L"


@dataclass(frozen=True)
class Example:
    """One example of a task: the whole sequence (`words`, `<bos>` first, one word a token), the `(start, end)` spans
    of it that the model must produce (`answers`, in order; the words before a span are its prompt), and one dict
    per answer of what it is scored by (`tags`: the depth, the distance, the string length)."""

    words: tuple[str, ...]
    answers: tuple[tuple[int, int], ...]
    tags: tuple[dict, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.words)

    def text(self) -> str:
        return " ".join(self.words)


def word_tokenizer(words):
    """A `PreTrainedTokenizerFast` over `SPECIAL_WORDS + words`: ids in that order, one id per whitespace-separated
    word, `<unk>` for a word outside the vocabulary, nothing added around the text (examples carry their `<bos>`)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocabulary = [*SPECIAL_WORDS, *(word for word in words if word not in SPECIAL_WORDS)]
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("a task's vocabulary holds a word twice")
    backend = Tokenizer(WordLevel({word: index for index, word in enumerate(vocabulary)}, unk_token=UNK))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK)


class Task:
    """A synthetic task: a generator of examples with its own vocabulary. Subclasses set the class attributes and
    write `example`; everything else (the tokenizer, seeded example sets) is here."""

    name: str = ""
    description: str = ""
    citation: str = ""
    words: tuple[str, ...] = ()
    min_length: int = 1  # the shortest example the format allows, in tokens
    breakdown: str | None = None  # the tag that evaluation breaks exact match down by
    # The task's training recipe: what the loss reads (LOSSES) and how long its examples are (FULL_LENGTH, UP_TO_L).
    # The model and the number of steps are the `task` preset's (training/options.py).
    loss: str = EVERY_TOKEN
    train_lengths: str = FULL_LENGTH

    def example(self, rng: random.Random, length: int) -> Example:
        raise NotImplementedError

    def tokenizer(self):
        return word_tokenizer(self.words)

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_WORDS) + len(self.words)

    def train_length(self, rng: random.Random, length: int) -> int:
        """How long a training example for training length `length` is, as `train_lengths` says: all of it, or a
        length drawn uniformly from the shortest the format allows up to it."""
        return length if self.train_lengths == FULL_LENGTH else rng.randint(self.min_length, length)

    def examples(self, seed: int, length: int, count: int, purpose: str = "train") -> list[Example]:
        """`count` examples: for training, of the lengths `train_length` draws to fit `length` tokens; for
        evaluation, of `length` tokens. The same seed, length and purpose give the same examples, whatever else has
        been drawn: the training examples of a run, the evaluation set every model is scored on."""
        rng = random.Random(f"{self.name}-{purpose}-{seed}-{length}")
        if purpose == "train":
            return [self.example(rng, self.train_length(rng, length)) for _ in range(count)]
        return [self.example(rng, length) for _ in range(count)]

    def evaluation_examples(self, length: int, count: int) -> list[Example]:
        """The `count` examples of `length` tokens that every model is scored on: from seed 0, whatever the run's
        seed."""
        return self.examples(0, length, count, "evaluation")

    def prompt(self, example: Example) -> str:
        """The words before the example's first answer: what a model is asked to continue."""
        return " ".join(example.words[: example.answers[0][0]])

    def check_length(self, length: int) -> None:
        if length < self.min_length:
            raise ValueError(f"{self.name}: an example of {length} tokens cannot hold the task's format: the shortest "
                             f"is {self.min_length} tokens. Give a longer --seq-len.")
