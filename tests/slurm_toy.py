"""A stand-in for a study's run in the Slurm tests: a picklable callable that does its work in steps, keeps its
progress in its own folder, and continues from there when called again, as a run continues from its checkpoint.

A Slurm job unpickles it by reference, so the job's Python must import this module: the tests put tests/ on the
PYTHONPATH that the jobs inherit (and the result says which file the job imported).
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CountingRun:
    """Counts to `steps`, one step every `seconds`, writing the count to FOLDER/steps after each; a call finds the
    count its folder holds and continues from it. Each call appends the count it started from to FOLDER/starts.
    Returns what it did: {"steps", "started_at", "job", "module"}; raises once it is done if `fail`."""

    folder: str
    steps: int
    seconds: float = 0.0
    fail: bool = False

    @property
    def label(self) -> str:
        return f"counting to {self.steps} in {Path(self.folder).name}"

    def __call__(self) -> dict:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        counter = folder / "steps"
        start = int(counter.read_text()) if counter.exists() else 0
        with open(folder / "starts", "a") as starts:
            starts.write(f"{start}\n")
        for step in range(start, self.steps):
            time.sleep(self.seconds)
            partial = folder / "steps.partial"  # written whole, then renamed: a kill never leaves half a number
            partial.write_text(str(step + 1))
            partial.replace(counter)
        if self.fail:
            raise RuntimeError(f"{self.label}: failing as asked")
        return {"steps": int(counter.read_text()), "started_at": start, "job": os.environ.get("SLURM_JOB_ID"),
                "module": __file__}


def starts(folder) -> list[int]:
    """The counts that the calls of a CountingRun in `folder` started from, in order."""
    path = Path(folder) / "starts"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def count(folder) -> int:
    """The count a CountingRun in `folder` has reached (0 before its first step)."""
    path = Path(folder) / "steps"
    return int(path.read_text()) if path.exists() else 0
