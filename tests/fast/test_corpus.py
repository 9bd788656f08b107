"""The embedded corpus (its split and provenance note), the Markdown conversion that built it, and `--data` sources."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
from conftest import ROOT
from datasets import Dataset, DatasetDict

from hf_posattn.data.corpus import CORPUS_FILE, load_shakespeare, load_texts


def build_script():
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "scripts" / "build_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_embedded_corpus_holds_out_whole_works():
    corpus = load_shakespeare()
    train, validation = corpus["train"], corpus["validation"]
    assert len(train) + len(validation) == 38
    assert sorted(validation["title"]) == ["Macbeth", "Richard II", "Twelfth Night"]
    assert not set(train["title"]) & set(validation["title"])
    assert sorted(validation["slug"]) == sorted(build_script().VALIDATION_WORKS)
    for text in validation["text"]:
        assert re.search(r"^[A-Z][A-Za-z ]+:\n", text, re.MULTILINE)  # speaker cues
        assert not re.search(r"\*\*|_|^#", text, re.MULTILINE)  # no Markdown left


def test_the_provenance_note_matches_the_file():
    note = (Path(str(CORPUS_FILE)).parent / "SHAKESPEARE.md").read_text()
    characters = sum(len(text) for split in load_shakespeare().values() for text in split["text"])
    assert f"{characters:,} characters" in note
    assert f"{Path(str(CORPUS_FILE)).stat().st_size:,} bytes compressed" in note
    assert "public domain" in note and build_script().WHEEL_SHA256 in note


def test_markdown_to_text():
    markdown = (
        "# Macbeth\n\n## ACT I\n\n### SCENE I. A desert place.\n\n_Thunder and lightning. Enter three\nWitches_\n\n"
        "**First Witch**  \nWhen shall we three meet again  \nIn thunder\\--or in rain?\n\n"
        "**LYSANDER**  \n__\\[Awaking]_  \nAnd run through fire.\n"
    )
    assert build_script().markdown_to_text(markdown) == (
        "Macbeth\n\nACT I\n\nSCENE I. A desert place.\n\n[Thunder and lightning. Enter three Witches]\n\n"
        "First Witch:\nWhen shall we three meet again\nIn thunder--or in rain?\n\n"
        "LYSANDER:\n[Awaking]\nAnd run through fire.\n"
    )


def test_text_files_keep_their_last_tenth_for_validation(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("".join(f"line {i}\n" for i in range(100)))
    second.write_text("one line without a break " * 40)
    texts = load_texts([str(first), str(second)])
    assert texts["train"]["text"][0] + texts["validation"]["text"][0] == first.read_text()
    assert texts["validation"]["text"][0].startswith("line 9")  # cut at a line break
    assert texts["train"]["text"][1] + texts["validation"]["text"][1] == second.read_text()
    assert len(texts["validation"]["text"][1]) == pytest.approx(0.1 * len(second.read_text()), abs=1)


def test_datasets_sources(tmp_path):
    rows = [{"content": f"document {i}", "id": i} for i in range(20)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    texts = load_texts([str(path)], text_column="content")
    assert texts["train"].column_names == ["text"]
    assert texts["validation"]["text"] == ["document 18", "document 19"]  # the last rows, in order
    with pytest.raises(ValueError, match=r"no column 'text' .*with text_column\."):  # named as Python names it
        load_texts([str(path)])

    saved = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_dict({"text": ["a b c"] * 3}),
                 "validation": Dataset.from_dict({"text": ["held out"]})}).save_to_disk(saved)
    assert load_texts([str(saved)])["validation"]["text"] == ["held out"]


def test_rows_without_text_are_dropped_and_mixed_kinds_refused(tmp_path):
    rows = [{"text": text} for text in ["first document", None, "", "   ", *[f"document {i}" for i in range(16)]]]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    texts = load_texts([str(path)])
    assert all(isinstance(text, str) and text.strip() for split in texts.values() for text in split["text"])
    assert texts["train"]["text"][0] == "first document" and len(texts["train"]) + len(texts["validation"]) == 17

    text_file, table = tmp_path / "a.txt", tmp_path / "b.csv"
    text_file.write_text("some text\n")
    table.write_text("text\nsome text\n")
    for mixed in ([text_file, path], [path, table]):
        with pytest.raises(ValueError, match="mixes kinds of data"):
            load_texts([str(p) for p in mixed])
