"""One study, two ways, in one sitting: its runs one after another in this process (all the CPU threads for each),
then `--jobs N` runs at once (1/N of the threads each); prints both wall times, their ratio, the CPU, and whether the
two tables agree (to the last printed digit, and the largest difference of an exact match or perplexity).

    python scripts/study_jobs.py --task passkey --quick --max-steps 300 --jobs 2

Models this small use two threads poorly, so two runs side by side may finish sooner than one after another with two
threads each: what this measures. Each study goes to a folder of its own under --output-dir (removed first).
"""

import argparse
import json
import os
import shutil
import time

from hf_posattn import CompareOptions, compare
from hf_posattn.common import hardware


def study(options: CompareOptions, folder: str, jobs: int) -> tuple[float, dict]:
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    result = compare(CompareOptions(**{**vars(options), "output_dir": folder, "jobs": jobs}))
    return time.perf_counter() - start, result


def numbers(result: dict) -> list[float]:
    """Every mean the table shows, row by row and length by length."""
    key = "perplexity" if "perplexity" in result["table"][0] else "exact_match"
    return [value for row in result["table"] for value in row[key].values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="passkey")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output-dir", default=os.path.join("runs", "study-jobs"))
    args = parser.parse_args()
    options = CompareOptions(task=args.task, quick=args.quick, max_steps=args.max_steps)
    one_by_one, first = study(options, os.path.join(args.output_dir, "in-process"), 1)
    side_by_side, second = study(options, os.path.join(args.output_dir, f"jobs{args.jobs}"), args.jobs)
    same = [round(a, 2) == round(b, 2) for a, b in zip(numbers(first), numbers(second))]
    largest = max(abs(a - b) for a, b in zip(numbers(first), numbers(second)))
    print(json.dumps({"machine": hardware(), "task": args.task, "runs": len(first["runs"]),
                      "max_steps": first["settings"]["max_steps"], "in_process_minutes": one_by_one / 60,
                      f"jobs{args.jobs}_minutes": side_by_side / 60, "ratio": one_by_one / side_by_side,
                      "cells_equal_to_2_decimals": f"{sum(same)}/{len(same)}", "largest_difference": largest},
                     indent=2))


if __name__ == "__main__":
    main()
