"""What a study measures, decided once: one study kind per task, behind one interface (`StudyKind`), as one position
scheme is one class behind the model's. The engine (plan, runs, gather), the tables and the figures call the kind;
nothing else asks which task a study is of.

A new synthetic task is one generator module (data/tasks); it needs a kind of its own only if it is scored or drawn
differently from `TaskStudy` (passkey adds its depth summaries, recall its lookup figure).
"""

from typing import Protocol

from ..training.options import TrainingOptions


class StudyKind(Protocol):
    """The study of one task. `material` is what every run is scored on (the language model's validation tokens, a
    task's evaluation examples), made once by `prepare` and handed to every run."""

    name: str  # the task's name, as --task gives it

    def tokenizer_source(self, options) -> dict:
        """What the study's shared tokenizer is made for, as recorded beside it and checked on every later call."""

    def prepare(self, options) -> tuple[object, object]:
        """The shared tokenizer and the material (bad input refused here, before any training)."""

    def describe(self, options, material) -> str:
        """How the runs are scored, in a phrase for the study's first line."""

    def measures(self, options, material) -> dict:
        """What identifies this evaluation beyond its lengths: a run evaluated otherwise is evaluated again."""

    def skipped_lengths(self, run: TrainingOptions, lengths: list[int]) -> dict[int, str]:
        """The lengths the run's model cannot be evaluated at, with why (decided before any training)."""

    def evaluate(self, model, tokenizer, material, lengths: list[int]) -> list[dict]:
        """One result per length (`{"length": n, "skipped": why}` where the model cannot take it)."""

    def evaluate_run(self, model, tokenizer, run: TrainingOptions, material, lengths: list[int]) -> dict:
        """What the kind measures of the trained run itself, once (not per context extension)."""

    def result_line(self, results: list[dict]) -> str:
        """A run's results in a line, as the study prints it."""

    def summarize_results(self, results: list[list[dict]], lengths: list[int]) -> dict:
        """A table row's numbers from one result list per seed: mean and 95 % interval at every length."""

    def summarize_runs(self, runs: list[dict]) -> dict:
        """What a row adds from its runs' records beyond the results (e.g. the embedding signal)."""

    def settings(self, options, material) -> dict:
        """What the study's settings record beyond its options (the tokens actually scored, ...)."""

    def study_fields(self, material) -> dict:
        """The study's own fields of compare.json (its task, baseline, ...)."""

    def markdown_table(self, study: dict) -> str:
        """The table that `posattn compare` prints and writes to compare.md."""

    def write_outputs(self, study: dict, folder: str) -> None:
        """The tables (md, csv, json) and figures in the study's folder, each written whole."""


def study_kind(task: str) -> StudyKind:
    """The study of `task`: language modelling, a synthetic task scored or drawn in its own way, or any other
    synthetic task (data/tasks), by name; an unknown task is refused with the choices."""
    from .lm import LanguageModelStudy
    from .tasks import TASK_KINDS, TaskStudy

    return {LanguageModelStudy.name: LanguageModelStudy, **TASK_KINDS}.get(task, TaskStudy)(task)


def markdown_table(study: dict) -> str:
    """The table of a study (as `compare` returns it, or `figures.study.read_study` reads it back) in Markdown."""
    return study_kind(study["settings"]["task"]).markdown_table(study)
