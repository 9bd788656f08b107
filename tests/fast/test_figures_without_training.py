"""Figures that need no training: `posattn plot-positions` of the closed form and of a tiny model's positions, the
word starts and grid of the attention figure, plot commands refusing a folder without a model, `posattn demo
lookup`, and a figure the disk cannot hold leaving the previous one whole. Every figure is checked as a file: a PNG
of the promised size with something drawn on it. Figures of trained models are in tests/e2e/test_pictures.py."""

import pytest
import torch
from conftest import SCHEMES, assert_png, posattn, tiny_lm

from hf_posattn.figures.common import DPI
from hf_posattn.lesson.lookup import lookup_demo


def test_plot_positions_draws_the_closed_form(tmp_path, capsys):
    output = tmp_path / "positions.png"
    assert posattn("plot-positions", "--output", output, "--positions", 64, "--dim", 32) == 0
    assert_png(output, (16 * DPI, int(4.5 * DPI)))
    assert str(output) in capsys.readouterr().out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_plot_positions_adds_what_the_model_holds(scheme, tmp_path):
    from hf_posattn.figures.positions import plot_positions

    output = plot_positions(str(tmp_path / f"{scheme}.png"), tiny_lm(scheme), positions=100)
    assert_png(output, (16 * DPI, 9 * DPI))  # two rows: the closed form, then the model's scheme


@pytest.mark.parametrize("labels, starts", [
    (["ROM", "EO", ":", "\\n", "But", " soft", ",", " what", " light"], [1, 0, 0, 0, 1, 1, 0, 1, 1]),
    (["Jul", "iet", "'s", " un", "subst", "antial", " dream"], [1, 0, 0, 1, 0, 0, 1]),
    (["ĠThe", "Ġcat"], [1, 1]),  # raw byte-level BPE pieces
    (["▁The", "▁c", "at"], [1, 1, 0]),  # SentencePiece pieces
    ([":\\n", "Enter", " ROM", "EO"], [1, 1, 1, 0]),  # a line break inside a token
    (["a", "\n", "b", "Ċ", "c"], [1, 0, 1, 0, 1]),  # a line break as it decodes, or as byte-level BPE stores it
    (["x", "\tdef", "ine"], [1, 1, 0]),  # other white space
    (["x"], [1]),
    (["\\n", "ROM", "EO", " ", "\\n", " ", "x"], [0, 1, 0, 0, 0, 0, 1]),  # white space alone starts nothing
])
def test_word_starts(labels, starts):
    from hf_posattn.figures.attention import word_starts

    assert word_starts(labels) == [bool(start) for start in starts]


@pytest.mark.parametrize("text", ["ROMEO: But soft, what light through yonder window breaks?",
                                  "Juliet's unsubstantial dreams\nAnd thereby hangs a tale.",
                                  "O, that this too too solid flesh would melt,\nThaw and resolve itself into a dew!"])
def test_word_starts_of_a_byte_level_bpe_count_the_words(text):
    """A real tokenizer of the project (byte-level BPE on a little text, so that words split into pieces): one word
    start per word, whatever the pieces."""
    from hf_posattn.data.corpus import load_shakespeare
    from hf_posattn.data.tokenizers import train_tokenizer
    from hf_posattn.figures.attention import token_labels, word_starts

    tokenizer = train_tokenizer([load_shakespeare()["train"][0]["text"][:20_000]], 400)
    labels = token_labels(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
    assert len(labels) > len(text.split())  # some words are several pieces
    assert sum(word_starts(labels)) == len(text.split()), labels


def test_attention_grid_marks_word_starts_and_has_one_colour_bar():
    import matplotlib.pyplot as plt

    from hf_posattn.figures.attention import WORD_START, attention_figure

    labels = ["ROM", "EO", ":", " But", " so", "ft"]
    weights = torch.softmax(torch.randn(2, 3, 6, 6), dim=-1)
    figure = attention_figure(weights, labels)
    try:
        heat_maps, (bar,) = figure.axes[:6], figure.axes[6:]
        assert bar.get_ylabel() == "attention weight" and bar.get_ylim() == (0.0, 1.0)
        for ax in heat_maps:
            for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
                assert [tick.get_text() for tick in ticks] == [f"{WORD_START}ROM", "EO", ":", f"{WORD_START}But",
                                                               f"{WORD_START}so", "ft"]
                assert [tick.get_fontweight() for tick in ticks] == ["bold", "normal", "normal", "bold", "bold",
                                                                     "normal"]
    finally:
        plt.close(figure)
    one = attention_figure(weights, labels, layer=1, head=2)
    try:
        assert len(one.axes) == 2 and one.axes[1].get_ylabel() == "attention weight"
    finally:
        plt.close(one)


def test_plot_commands_refuse_a_folder_without_a_model(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "figure.png"
    assert posattn("plot-positions", empty, "--output", output) == 2
    assert f"{empty} holds no model" in capsys.readouterr().err
    assert posattn("plot-attention", empty, "some text", "--output", output) == 2
    assert f"{empty} holds no model" in capsys.readouterr().err
    assert not output.exists()


def test_lookup_demo_retrieves_exactly_and_blends(tmp_path, capsys):
    output = tmp_path / "lookup.png"
    result = lookup_demo(str(output))
    # One-hot keys, queries and values: q·Kᵀ·V is exactly the value of the matching key, for one query or all.
    assert torch.equal(result["hard"], result["values"])
    assert torch.equal(result["every"], result["all_values"])
    # Softmax: a soft match at T = 1, sharper at every lower temperature, exact (to float64) at the lowest.
    weights = list(result["weight_on_match"].values())  # temperatures from high to low
    assert weights[1] < 0.5 and all(a < b for a, b in zip(weights, weights[1:]) if b < 1.0)
    assert torch.allclose(result["sharp"], result["values"], rtol=0, atol=1e-12)
    # Similar keys: a query that is no key gets a blend, mostly of the closest key's value.
    blend = result["blend_weights"]
    assert 0.6 < blend["chat"] < 0.99 and blend["chien"] > 0.05 and blend["maison"] < 1e-3
    assert sum(blend.values()) == pytest.approx(1.0)
    assert result["blend"]["cat"] == pytest.approx(blend["chat"]) and result["blend"]["dog"] == pytest.approx(blend["chien"])
    assert_png(output, (16 * DPI, 4 * DPI))
    assert "Q·Kᵀ·V = V exactly: True" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["plot-positions", "--positions", 64, "--dim", 32], ["demo", "lookup"]])
def test_a_figure_that_cannot_be_written_leaves_the_previous_one(command, tmp_path, capsys):
    """The disk fills while a figure is written over an older one: the older one stays whole, no temporary file is
    left, and the command says what it could not write (exit status 1, no traceback)."""
    from conftest import disk_full_past

    output = tmp_path / "figure.png"
    assert posattn(*command, "--output", output) == 0
    before = output.read_bytes()
    with disk_full_past(10_000):
        assert posattn(*command, "--output", output) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write {output}: File too large" in err and "Traceback" not in err, err
    assert output.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]
