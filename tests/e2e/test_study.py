"""The study's numbers: intervals over seeds through the study's own summary, the loss at each position of a window,
the position signal in the embeddings, context-extension rows for rotary-type schemes, and resuming a multi-seed
study run by run. Tiny settings: 2 training steps per run."""

import json

import pytest
from conftest import assert_png, play_file, posattn

TINY = ["--seq-len", "32", "--factors", "1,2,4", "--max-steps", "2", "--batch-size", "2", "--vocab-size", "300",
        "--eval-tokens", "4096"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return play_file(tmp_path_factory, 100_000)


@pytest.fixture(scope="module")
def study(text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study") / "study"
    assert posattn("compare", *TINY, "--data", text, "--output-dir", folder, "--positions", "rotary", "xpos",
                   "sinusoidal", "--seeds", "0,1") == 0
    return folder


def test_rotary_type_schemes_get_context_extension_rows_from_the_same_runs(study):
    recorded = json.loads((study / "compare.json").read_text())
    rows = recorded["table"]
    assert [row["label"] for row in rows] == [
        "rotary", "rotary + linear interpolation (x4)", "rotary + dynamic NTK (x4)", "rotary + YaRN (x4)",
        "xpos", "xpos + linear interpolation (x4)", "xpos + dynamic NTK (x4)", "xpos + YaRN (x4)", "sinusoidal"]
    assert len(recorded["runs"]) == 6  # no run trained for an extension
    for row in rows:
        assert row["seeds"] == 2
        for length in ("32", "64", "128"):
            assert row["low"][length] <= row["perplexity"][length] <= row["high"][length]
        # Every row has its per-position curve at the longest length, its 127 predicted positions.
        assert row["position_loss"]["length"] == 128 and len(row["position_loss"]["loss"]) == 127
    signal = rows[-1]["embedding_signal"]
    assert signal["start"]["ratio"]["mean"] > 0 and signal["end"]["ratio"]["mean"] > 0
    assert rows[0]["embedding_signal"] is None  # rotary adds nothing to the embeddings
    # The figure subtracts the unigram model's loss at each position of the same windows.
    unigram = recorded["unigram_baseline"]["position_loss"]
    assert sorted(unigram, key=int) == ["32", "64", "128"] and len(unigram["128"]) == 127
    assert all(0 < loss < 20 for loss in unigram["128"])
    assert_png(study / "compare-positions.png", (1200, 600))
    assert_png(study / "compare.png", (1100, 600))


def test_a_multi_seed_study_resumes_run_by_run(study, text, capsys):
    import shutil

    before = json.loads((study / "compare.json").read_text())
    shutil.rmtree(study / "xpos-seed1")  # a run lost
    run_file = study / "sinusoidal-seed0" / "posattn_run.json"  # a run interrupted: its results not written
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "results": None}))
    assert posattn("compare", *TINY, "--data", text, "--output-dir", study, "--positions", "rotary", "xpos",
                   "sinusoidal", "--seeds", "0,1") == 0
    err = capsys.readouterr().err
    assert "xpos, seed 1: training ..." in err and "sinusoidal, seed 0: training ..." in err
    assert err.count("training ...") == 2 and err.count("reusing the finished run") == 4
    after = json.loads((study / "compare.json").read_text())
    # The reused runs give the same numbers; the retrained ones too (same seed, same options).
    for old, new in zip(before["runs"], after["runs"]):
        assert [r["perplexity"] for r in old["results"]] == pytest.approx([r["perplexity"] for r in new["results"]])
