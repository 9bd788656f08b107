"""What a run trains on, decided once (`training_data`): text (language modelling on `--data`, or the embedded
corpus) or a synthetic task. Each answers the same questions, so that the rest of training never asks which it has:
its texts (training and validation), a new tokenizer, its blocks, the prompt its finished model is sampled with, and
its name in the run's records.
"""

from ..data.corpus import CORPUS_NAME, load_texts
from ..data.tasks import LANGUAGE_MODELLING, task_named
from ..data.tasks.training import example_blocks, task_texts
from ..data.tokenizers import pack, train_tokenizer


class TextData:
    """Language modelling: the text packed into blocks of `seq_len` tokens, and a BPE tokenizer trained on it (by
    the main process only: the others read it back from the run folder)."""

    trains_tokenizer = True

    def __init__(self, options):
        self.options = options
        self.texts = load_texts(options.data, options.text_column)
        self.name = CORPUS_NAME if not options.data else ", ".join(options.data)

    def new_tokenizer(self):
        return train_tokenizer(self.texts["train"]["text"], self.options.vocab_size)

    def blocks(self, tokenizer):
        return pack(self.texts, tokenizer, self.options.seq_len)

    def prompt(self) -> str:
        """The first speaker's cue in the validation text (a line ending with a colon, as `ROMEO:` in a play), else
        its first line: something the model has seen how to continue."""
        lines = [line for line in self.texts["validation"]["text"][0].splitlines()[:100] if line.strip()] or ["\n"]
        return next((line for line in lines if line.endswith(":")), lines[0]) + "\n"


class TaskData:
    """A synthetic task: its examples one a block, and its own word-level tokenizer (the same in every process)."""

    trains_tokenizer = False

    def __init__(self, options, task):
        self.options, self.task = options, task
        steps = options.max_steps * options.batch_size * options.gradient_accumulation_steps
        self.texts = task_texts(task, options.seed, options.seq_len, steps)
        self.name = f"the {task.name} task ({task.description})"

    def new_tokenizer(self):
        return self.task.tokenizer()

    def blocks(self, tokenizer):
        return example_blocks(self.texts, tokenizer, self.options.seq_len, self.task.loss)

    def prompt(self) -> str:
        return self.task.prompt(self.task.examples(0, self.options.seq_len, 1, "validation")[0])


def training_data(options) -> TextData | TaskData:
    """What `options` train on: their text, or their synthetic task."""
    return TextData(options) if options.task == LANGUAGE_MODELLING else TaskData(options, task_named(options.task))
