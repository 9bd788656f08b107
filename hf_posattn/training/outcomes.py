"""What a training run ends with: its result (`TrainingResult`), or why it stopped before its end, with what it kept
and how to continue (`TrainingInterrupted`, `TrainingWriteFailed`, `TrainingDiverged`).
"""

import dataclasses
from dataclasses import dataclass, field

from ..common import Interrupted, option
from ..files import WriteFailed


@dataclass
class TrainingResult:
    output_dir: str
    eval_loss: float  # mean cross-entropy per token on the whole validation split, in nats
    perplexity: float
    unigram_loss: float
    unigram_perplexity: float
    steps: int
    tokens_seen: int
    train_seconds: float  # the Trainer's training loop (of this call only, when it resumed a run)
    wall_seconds: float  # the whole call: data, tokenizer, training, evaluation, saving, sample
    hardware: str
    parameters: int
    sample: str
    options: dict = field(default_factory=dict)  # resolved: every None replaced by what was used

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainingStopped(Exception):
    """Training stopped before its end; what it saved stays, and `resume=True` continues from its last checkpoint."""


def resume_options(output_dir: str) -> str:
    """What continues the run: resume and the same output_dir, named as the caller gives them (`option`)."""
    return f"{option('resume', True)} and the same {option('output_dir', output_dir)}"


class TrainingInterrupted(TrainingStopped, Interrupted):
    """Ctrl-C stopped training; the checkpoint it saved stays, and `resume=True` continues from it."""

    def __init__(self, output_dir: str, checkpoint: str | None):
        self.output_dir, self.checkpoint = output_dir, checkpoint
        where = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been saved yet"
        super().__init__(f"training interrupted: {where}. Continue with {resume_options(output_dir)}.")


class TrainingWriteFailed(TrainingStopped, WriteFailed):
    """A file of the run could not be written while it trained (a full disk while a checkpoint was saved): training
    stopped; the checkpoints saved before stay, and `resume=True` continues from the last whole one."""

    def __init__(self, output_dir: str, failure: WriteFailed):
        self.output_dir, self.failure = output_dir, failure
        super().__init__(f"{failure}. Training stopped there; what it saved before stays. Free some space, then "
                         f"continue with {resume_options(output_dir)}.")


class TrainingDiverged(TrainingStopped, ValueError):
    """The loss or the weights became NaN or infinite: training stopped without saving them."""

    def __init__(self, output_dir: str, step: int, what: str, learning_rate: float, checkpoint: str | None):
        self.output_dir, self.checkpoint = output_dir, checkpoint
        kept = f"the last good checkpoint, {checkpoint}, is kept" if checkpoint else "no checkpoint had been saved"
        super().__init__(f"{what} at step {step}: training stopped there and saved nothing from that step on "
                         f"({kept}). The learning rate {learning_rate} is probably too high: train again with a "
                         f"lower {option('learning_rate')} (with {option('overwrite', True)}, or another "
                         f"{option('output_dir')}).")
