"""What every synthetic task shares: the example format, the word-level tokenizer, and the interface the study and
training read.

A task writes its examples as words, one word per token, so that "length" means the same thing to the generator,
the tokenizer and the model. An example is the whole sequence the model reads, from its `<bos>` to its last answer
word, with the spans of it that are answers:

    words    <bos> ... what is the pass key ? the pass key is 7 2 9 1 4
    answers                                                    [-------]      (start, end) into `words`

Training reads the words, one example a block from position 0 (the language model's loss on every token: the loss
on the answers alone teaches too little per step to learn at this size). Evaluation gives the model the words before
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

    def example(self, rng: random.Random, length: int) -> Example:
        raise NotImplementedError

    def tokenizer(self):
        return word_tokenizer(self.words)

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_WORDS) + len(self.words)

    def train_length(self, rng: random.Random, length: int) -> int:
        """How long a training example for training length `length` is: all of it (a task whose examples come in
        sizes, copy and reverse, draws one that fits)."""
        return length

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
