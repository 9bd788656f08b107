"""What every study's tables share: the cells (a mean with its 95 % interval), the header of evaluation lengths, and
the files (compare.md, compare.csv, compare.json), each written whole. Each study kind (`StudyKind`) says what goes
in them.
"""

import csv
import io
import os

from ..files import write_json, write_text


def interval_cell(mean: float, low: float | None) -> str:
    """`mean ± half width` of the 95 % interval (symmetric: Student's t), or the mean alone with one seed."""
    return f"{mean:.2f}" if low is None else f"{mean:.2f} ± {mean - low:.2f}"


def length_header(lengths: list[int], seq_len: int) -> list[str]:
    """Each evaluation length with its multiple of the training length L."""
    return [f"{length} ({length // seq_len}L)" if length != seq_len else f"{length} (L)" for length in lengths]


def csv_cell(value):
    """A number to four decimals; text as it is; nothing for a length that was not measured."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def write_tables(study: dict, folder: str, header: list[str], rows: list[list], markdown: str) -> None:
    """compare.json (the whole study), compare.csv (`header` and `rows`) and compare.md (`markdown`)."""
    write_json(os.path.join(folder, "compare.json"), study)
    with io.StringIO(newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([[csv_cell(value) for value in row] for row in rows])
        write_text(os.path.join(folder, "compare.csv"), file.getvalue())
    write_text(os.path.join(folder, "compare.md"), markdown)
