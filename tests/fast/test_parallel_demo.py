"""`posattn demo parallel`: one attention layer timed against a GRU at growing lengths.

Timings are not asserted (the machine is shared and noisy): the tests check the rows and the table, that the figure
is a PNG with something drawn on it, the cost formulas and their crossings, and that every bad option is refused with
exit status 2 before anything is timed or written."""

import pytest
import torch
from conftest import assert_png

from hf_posattn.cli import main
from hf_posattn.figures.common import DPI
from hf_posattn.lesson.parallel import (
    attention_flops,
    cost_curves,
    crossings,
    crossovers,
    measure,
    parallel_demo,
    rnn_flops,
    score_bytes,
    time_verdict,
)

TINY = dict(hidden=16, heads=2, batch=1, repeats=1)
ROW_KEYS = {"length", "attention_ms", "rnn_ms", "rnn_over_attention", "attention_gflop_per_s", "rnn_gflop_per_s",
            "score_matrix_mb", "rnn_state_kb", "attention_peak_mb", "attention_sequential_steps",
            "rnn_sequential_steps"}


def exit_status(*args) -> int:
    """`posattn ARGS`'s exit status, whether argparse (SystemExit) or the command (return value) refused it."""
    try:
        return main([str(arg) for arg in args])
    except SystemExit as exit:
        return exit.code


def tiny_options(output) -> list:
    return ["--lengths", "8,2", "--hidden", 16, "--heads", 2, "--batch", 1, "--repeats", 1, "--output", output]


def test_the_smallest_sizes_run_and_draw(tmp_path, capsys):
    rows = parallel_demo(str(tmp_path / "p.png"), lengths=[1, 2], hidden=1, batch=1, repeats=1, backward=True)
    assert [row["rnn_sequential_steps"] for row in rows] == [1, 2]
    assert "T ≈ 1" in capsys.readouterr().out  # one score per head (1 float) against a state of 1 float


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
@pytest.mark.parametrize("backward", [False, True])
def test_measure_gives_one_row_per_length_in_order(backend, backward):
    rows = measure([16, 1, 4], attn_implementation=backend, backward=backward, **TINY)
    assert [row["length"] for row in rows] == [1, 4, 16]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["attention_ms"] > 0 and row["rnn_ms"] > 0
        assert row["rnn_over_attention"] == pytest.approx(row["rnn_ms"] / row["attention_ms"])
        assert row["attention_sequential_steps"] == 1 and row["rnn_sequential_steps"] == row["length"]
        assert row["score_matrix_mb"] * 2**20 == 1 * 2 * row["length"] ** 2 * 4  # batch x heads x T² floats
        assert row["attention_gflop_per_s"] == pytest.approx(
            attention_flops(row["length"], 1, 16, backward) / row["attention_ms"] / 1e6)
        assert row["attention_peak_mb"] is None  # measured on CUDA only


def test_the_command_prints_the_table_and_draws_the_figure(tmp_path, capsys):
    output = tmp_path / "figures" / "parallel.png"
    assert exit_status("demo", "parallel", *tiny_options(output)) == 0
    assert_png(output, (13 * DPI, int(9.5 * DPI)))
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("length T"))
    table = [line.split() for line in lines[header + 1:header + 3]]
    assert [row[0] for row in table] == ["2", "8"]
    assert [row[-1] for row in table] == ["2", "8"]  # the RNN's sequential steps: T
    assert all(len(row) == len(table[0]) for row in table)
    assert "CPU:" in out and f"wrote {output}" in out


def test_the_function_returns_the_rows_it_draws(tmp_path, capsys):
    output = tmp_path / "p.png"
    rows = parallel_demo(str(output), lengths=[4], backward=True, **TINY)
    assert [row["length"] for row in rows] == [4] and output.is_file()


@pytest.mark.parametrize("options, message", [
    (["--lengths", "0"], "positive"),
    (["--lengths", "-64"], "positive"),
    (["--lengths", "3"], "powers of two"),
    (["--lengths", "64,100,128"], "powers of two"),
    (["--lengths", "6"], "powers of two"),
    (["--lengths", ","], "at least one"),
    (["--lengths", "x"], "positive integers"),
    (["--hidden", "0"], "positive"),
    (["--batch", "0"], "positive"),
    (["--repeats", "0"], "positive"),
    (["--heads", "0"], "positive"),
    (["--threads", "0"], "positive"),
    (["--hidden", "100", "--heads", "3"], "not a multiple of heads"),
    (["--device", "tpu"], "device"),
    (["--device", "not a device"], "device"),
    (["--device", "cuda:99"], "GPU"),
    (["--attn-implementation", "flash_attention_2"], "invalid choice"),
])
def test_bad_options_exit_2_before_any_work(tmp_path, capsys, options, message):
    output = tmp_path / "p.png"
    assert exit_status("demo", "parallel", "--output", output, "--lengths", "2", "--repeats", "1", *options) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "length T" not in captured.out and not output.exists()  # nothing timed, nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert exit_status("demo", "parallel", *tiny_options(tmp_path / "p.png"), "--device", "cuda") == 2
    assert "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_mps_without_one_is_refused(tmp_path, capsys):
    assert exit_status("demo", "parallel", *tiny_options(tmp_path / "p.png"), "--device", "mps") == 2
    assert "no Apple GPU" in capsys.readouterr().err


def test_an_output_that_is_a_folder_is_refused(tmp_path, capsys):
    assert exit_status("demo", "parallel", *tiny_options(tmp_path)) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(lengths=[]), dict(lengths=[0]), dict(lengths=[12]), dict(lengths=[2.0]),
                                 dict(lengths=[True]), dict(heads=0), dict(hidden=-16), dict(repeats=0),
                                 dict(batch=1.5), dict(threads=0), dict(attn_implementation="flex_attention"), dict(device="xla")])
def test_the_function_refuses_bad_options_with_a_value_error(bad):
    options = dict(lengths=[2], **TINY)
    options.update(bad)
    with pytest.raises(ValueError):
        measure(**options)


# ---- the costs and where they cross ----

def test_crossings_find_each_change_of_the_cheaper_one_in_either_direction():
    lengths = [1, 2, 4, 8, 16]
    assert crossings(lengths, [1, 1, 1, 1, 1], [2, 2, 2, 2, 2]) == []
    assert crossings(lengths, [4, 4, 4, 4, 4], [2, 2, 2, 2, 2]) == []
    (length, attention_slower), = crossings(lengths, [1, 2, 4, 8, 16], [4, 4, 4, 4, 4])
    assert length == pytest.approx(4) and attention_slower
    (length, attention_slower), = crossings(lengths, [4, 2, 1 / 2, 1 / 4, 1 / 8], [1, 1, 1, 1, 1])
    assert 2 < length < 4 and not attention_slower
    both = crossings(lengths, [1, 3, 1, 3, 1], [2, 2, 2, 2, 2])
    assert [slower for _, slower in both] == [True, False, True, False]


@pytest.mark.parametrize("hidden, heads", [(256, 4), (64, 1), (96, 3), (512, 8), (1, 1), (2, 2), (8, 8)])
@pytest.mark.parametrize("backward", [False, True])
def test_attention_does_more_work_past_twice_hidden_and_outgrows_the_state_at_sqrt_head_dim(hidden, heads,
                                                                                               backward):
    costs = cost_curves([64, 4096], hidden, heads, batch=4, backward=backward)
    cross = crossovers([{"length": 64, "attention_ms": 1.0, "rnn_ms": 2.0}], costs)
    assert cross["work"] == pytest.approx(2 * hidden, rel=0.05)  # 8TH² + 2T²H = 12TH²  <=>  T = 2H
    assert cross["memory"] == pytest.approx(max(1, (hidden / heads) ** 0.5), rel=0.05)  # heads·T² = H, T >= 1
    assert cross["time"] == []
    assert attention_flops(4 * hidden, 4, hidden, backward) > rnn_flops(4 * hidden, 4, hidden, backward)
    assert attention_flops(hidden, 4, hidden, backward) < rnn_flops(hidden, 4, hidden, backward)
    assert score_bytes(4096, 4, heads) == 4 * heads * 4096**2 * 4


def test_threads_are_used_and_given_back(tmp_path, capsys):
    before = torch.get_num_threads()
    assert exit_status("demo", "parallel", *tiny_options(tmp_path / "p.png"), "--threads", 1) == 0
    assert "1 thread" in capsys.readouterr().out
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("backend, length", [("eager", 2**22), ("sdpa", 2**40)])
def test_lengths_that_cannot_fit_in_memory_are_refused_before_any_work(backend, length):
    with pytest.raises(ValueError, match="GiB free"):
        measure([2, length], attn_implementation=backend, **TINY)


def test_the_time_verdict_names_the_winner_at_length_even_when_noise_makes_them_cross_several_times():
    rows = [{"attention_ms": 1.0, "rnn_ms": 2.0}]
    assert time_verdict(rows, []) == "attention is faster at every length timed"
    assert time_verdict([{"attention_ms": 3.0, "rnn_ms": 2.0}], []) == "the GRU is faster at every length timed"
    assert time_verdict(rows, [(1000.0, True)]) == "the GRU is faster from T ≈ 1000"
    verdict = time_verdict(rows, [(400.0, True), (600.0, False), (1500.0, True)])
    assert "from T ≈ 400" in verdict and "3 times" in verdict and verdict.endswith("the GRU is faster from T ≈ 1500")
