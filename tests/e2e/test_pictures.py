"""Figures and demos: `posattn plot-positions`, `posattn plot-attention`, `posattn demo lookup|context`.

Every figure is checked as a file: a PNG of the promised size with something drawn on it. The context demo trains
its tiny model with the real Trainer (about 20 s on 2 CPU cores) once for the module; its folder serves the
attention plots too."""

import sys

import pytest
import torch
from conftest import assert_png, posattn

from hf_posattn.figures.common import DPI
from hf_posattn.lesson.context import DECIDING_WORD, MEANING, context_demo


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The context demo, run once: its result, and the folder of its trained model."""
    folder = tmp_path_factory.mktemp("context")
    result = context_demo(str(folder / "context.png"), output_dir=str(folder / "model"))
    return result, folder


def test_plot_positions_of_a_trained_model(context, tmp_path):
    output = tmp_path / "trained.png"
    assert posattn("plot-positions", context[1] / "model", "--output", output) == 0
    assert_png(output, (16 * DPI, 9 * DPI))


def test_plot_attention_draws_layers_by_heads(context, tmp_path):
    output = tmp_path / "attention.png"
    assert posattn("plot-attention", context[1] / "model", "i not like tea , i", "--output", output) == 0
    # The tiny preset: 4 layers x 4 heads, each heat map 2.5 inches square (6 tokens need no more).
    assert_png(output, (4 * 250, 4 * 250))


def test_plot_attention_zooms_into_one_head(context, tmp_path):
    output = tmp_path / "head.png"
    assert posattn("plot-attention", context[1] / "model", "i not like tea , i", "--layer", 1, "--head", 2,
                   "--output", output) == 0
    assert_png(output, (8 * DPI, 8 * DPI))
    layer = tmp_path / "layer.png"
    assert posattn("plot-attention", context[1] / "model", "i not like tea , i", "--layer", 3, "--output",
                   layer) == 0
    assert_png(layer, (4 * 250, 250))


def test_plot_attention_refuses_bad_input(context, tmp_path, capsys):
    model = context[1] / "model"
    output = tmp_path / "attention.png"
    assert posattn("plot-attention", model, "i not like tea , i", "--layer", 4, "--output", output) == 2
    assert "--layer 4: the model has 4 layers" in capsys.readouterr().err
    assert posattn("plot-attention", model, "i not like tea , i", "--max-tokens", 3, "--output", output) == 2
    assert "6 tokens long" in capsys.readouterr().err
    assert not output.exists()


def test_missing_matplotlib_is_named_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert posattn("plot-positions", "--output", tmp_path / "p.png") == 2
    assert 'pip install "hf-posattn[plot]"' in capsys.readouterr().err
    assert posattn("demo", "lookup", "--output", tmp_path / "l.png") == 2
    assert not list(tmp_path.iterdir())


def test_html_without_bertviz_is_refused_before_any_work(context, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bertviz", None)  # bertviz is optional and heavy: not in the test extra
    output, html = tmp_path / "attention.png", tmp_path / "view.html"
    assert posattn("plot-attention", context[1] / "model", "i do like", "--output", output, "--html", html) == 2
    assert 'pip install "hf-posattn[html]"' in capsys.readouterr().err
    assert not output.exists() and not html.exists()


def test_html_head_view_with_bertviz(context, tmp_path):
    pytest.importorskip("bertviz", reason="bertviz is optional (pip install \"hf-posattn[html]\")")
    html = tmp_path / "view.html"
    assert posattn("plot-attention", context[1] / "model", "i do like", "--output", tmp_path / "a.png", "--html",
                   html) == 0
    page = html.read_text()
    assert '"left_text": ["i", " do", " like"]' in page and "<script" in page


def test_lookup_demo_command(tmp_path, capsys):
    assert posattn("demo", "lookup", "--output", tmp_path / "lookup.png") == 0
    assert "blend" in capsys.readouterr().out
    assert_png(tmp_path / "lookup.png", (16 * DPI, 4 * DPI))


def test_context_demo_predicts_every_context_and_attends_to_the_deciding_word(context):
    result, folder = context
    assert result["wrong"] == [] and result["contexts"] == 96
    for shown in result["shown"]:
        assert shown["word"] == MEANING[shown["case"][1]] and shown["probability"] > 0.5
        # The last token's attention row: in at least one head, its largest weight is on the deciding word.
        last = shown["last_token_attention"]
        assert torch.allclose(last.sum(-1), torch.ones(last.shape[:2]), atol=1e-5)
        assert (last.argmax(-1) == DECIDING_WORD).any(), shown["prompt"]
        assert shown["heads_on_deciding_word"]
    assert_png(folder / "context.png", (16 * DPI, 8 * DPI))
    assert (folder / "model" / "model.safetensors").is_file()  # kept for `posattn plot-attention`


@pytest.mark.parametrize("command, figure", [
    (["plot-positions"], "positions.png"),
    (["plot-attention", "{folder}", "i not like tea , i"], "attention.png"),
    (["plot-training"], "training.png"),
])
def test_no_figure_command_writes_through_a_link_in_the_model_folder(command, figure, context, tmp_path, capsys):
    """A model folder received from someone else may hold a link under a figure's default name: the command refuses
    it before drawing, and the file it points to is untouched."""
    folder = context[1] / "model"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link, kept = folder / figure, tmp_path / figure
    if link.exists():
        link.rename(kept)
    link.symlink_to(victim)
    try:
        arguments = [part.format(folder=folder) for part in command] if len(command) > 1 else [*command, folder]
        assert posattn(*arguments) == 2
        assert f"{figure} is a symbolic link" in capsys.readouterr().err
        assert victim.read_text() == "precious" and link.is_symlink()
    finally:
        link.unlink()
        if kept.exists():
            kept.rename(link)
