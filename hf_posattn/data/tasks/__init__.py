"""The synthetic tasks of the study, by name (`TASKS`): each a generator of examples with its own word-level
vocabulary (common.py has the format). `lm`, language modelling on text, is the study's other task: it has no
generator here (its text is the corpus, its tokenizer a trained BPE).
"""

from .common import EVERY_TOKEN, FULL_LENGTH, Example, Task, word_tokenizer
from .passkey import Passkey
from .recall import Recall
from .strings import Copy, Reverse

LANGUAGE_MODELLING = "lm"
TASKS: dict[str, Task] = {task.name: task for task in (Passkey(), Recall(), Copy(), Reverse())}
TASK_NAMES = (LANGUAGE_MODELLING, *TASKS)


def task_named(name: str) -> Task:
    """The synthetic task called `name`; a ValueError naming the choices otherwise (`lm` has no generator)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASK_NAMES)}.")
    return TASKS[name]


def made_for(tokenizer) -> tuple[str, ...]:
    """What `tokenizer` was made for: the synthetic tasks whose words it holds, each at the id the task gives it (the
    tokenizer saved with every run and study of a task; copy and reverse share their words), else
    `(LANGUAGE_MODELLING,)`: text."""
    vocabulary = tokenizer.get_vocab()
    tasks = tuple(name for name, task in TASKS.items() if vocabulary == task.tokenizer().get_vocab())
    return tasks or (LANGUAGE_MODELLING,)


def made_for_text(tasks: tuple[str, ...]) -> str:
    """What `made_for` found, in words: "text", "the passkey task", "the copy or reverse task"."""
    return "text" if tasks == (LANGUAGE_MODELLING,) else f"the {' or '.join(tasks)} task"


def training_recipe(name: str) -> dict:
    """What a run of the task `name` trains on, as its records and the study's table say it: what its loss reads
    (`Task.loss`) and how long its examples are (`Task.train_lengths`). Language modelling: every token of blocks
    of L tokens."""
    if name == LANGUAGE_MODELLING:
        return {"loss": EVERY_TOKEN, "train_lengths": FULL_LENGTH}
    task = task_named(name)
    return {"loss": task.loss, "train_lengths": task.train_lengths}


__all__ = ["LANGUAGE_MODELLING", "TASKS", "TASK_NAMES", "Example", "Task", "made_for", "made_for_text", "task_named",
           "training_recipe", "word_tokenizer"]
