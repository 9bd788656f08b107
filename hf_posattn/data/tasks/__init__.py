"""The synthetic tasks of the study, by name (`TASKS`): each a generator of examples with its own word-level
vocabulary (common.py has the format). `lm`, language modelling on text, is the study's other task: it has no
generator here (its text is the corpus, its tokenizer a trained BPE).
"""

from .common import Example, Task, word_tokenizer
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


__all__ = ["LANGUAGE_MODELLING", "TASKS", "TASK_NAMES", "Example", "Task", "task_named", "word_tokenizer"]
