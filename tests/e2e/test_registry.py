"""A position scheme is one class: one defined here, registered at run time, goes through every tool (train, save, load,
plot, card, compare, the command line's choices) with no other file changed. Tiny settings: seconds each."""

import json

import pytest
import torch
from conftest import DistancePenalty, assert_png, play_file, posattn

from hf_posattn.cli import build_parser
from hf_posattn.sharing.loading import load_model

FAST = ["--max-steps", "2", "--seq-len", "32", "--batch-size", "2", "--vocab-size", "300", "--eval-steps", "2",
        "--quiet"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return play_file(tmp_path_factory, 60_000)


@pytest.fixture(scope="module")
def trained(penalty_registered, text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry") / "model"
    assert posattn("train", "--position", penalty_registered, *FAST, "--data", text, "--output-dir", folder) == 0
    return folder


def test_the_command_line_offers_a_registered_scheme(penalty_registered):
    for command in (["train"], ["compare"], ["demo", "context"]):
        args = build_parser().parse_args([*command, "--position" + ("s" if command == ["compare"] else ""),
                                          penalty_registered])
        assert penalty_registered in (args.position if command != ["compare"] else args.positions)


def test_a_registered_scheme_trains_saves_and_loads(penalty_registered, trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["position_embedding_type"] == penalty_registered
    model, tokenizer = load_model(str(trained))
    assert isinstance(model.model.positions, DistancePenalty)
    rates = model.model.positions.rate.detach()
    assert not torch.allclose(rates, torch.full_like(rates, 0.05))  # trained, saved and loaded back
    ids = tokenizer("ROMEO: what light", return_tensors="pt").input_ids.to(model.device)
    assert torch.isfinite(model(ids).logits).all()


def test_its_card_says_what_the_scheme_says_of_itself(trained):
    card = (trained / "README.md").read_text()
    assert DistancePenalty.description in card and DistancePenalty.citation in card
    assert f"**{DistancePenalty.name}**" in card


def test_it_is_drawn(trained, tmp_path):
    output = tmp_path / "positions.png"
    assert posattn("plot-positions", trained, "--output", output, "--positions", 48) == 0
    assert_png(output, (1600, 900))


def test_it_is_evaluated(trained, text, tmp_path):
    output = tmp_path / "eval.json"
    assert posattn("evaluate", trained, "--lengths", "32,64", "--data", text, "--quiet", "--output", output) == 0
    report = json.loads(output.read_text())
    assert report["position_embedding_type"] == DistancePenalty.name and report["rope_parameters"] is None
    assert [row["length"] for row in report["results"]] == [32, 64]


def test_it_runs_in_compare(penalty_registered, text, tmp_path):
    from hf_posattn import CompareOptions, compare

    study = compare(CompareOptions(output_dir=str(tmp_path / "study"), positions=["alibi", penalty_registered],
                                   factors=[1, 2], seq_len=32, max_steps=2, batch_size=2, vocab_size=300,
                                   data=[str(text)]))
    assert penalty_registered in json.dumps(study["table"])
    assert (tmp_path / "study" / f"{penalty_registered}-seed0" / "config.json").exists()
