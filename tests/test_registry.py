"""A position scheme is one class: one defined here, registered at run time, goes through every tool (train, save,
load, plot, card, compare, the command line's choices) with no other file changed. Tiny settings: seconds each."""

import json

import pytest
import torch
from conftest import assert_png
from torch import nn
from transformers import initialization as init

from hf_posattn.cli import build_parser, main
from hf_posattn.data.corpus import load_shakespeare
from hf_posattn.model.positional import POSITION_SCHEMES, PositionScheme, register_scheme
from hf_posattn.sharing.loading import load_model

FAST = ["--max-steps", "2", "--seq-len", "32", "--batch-size", "2", "--vocab-size", "300", "--eval-steps", "2",
        "--quiet"]


class DistancePenalty(PositionScheme):
    """A learned penalty per head, proportional to how far back the key is: a one-parameter-per-head ALiBi."""

    name = "test_distance_penalty"
    description = "a learned per-head penalty proportional to the distance, defined inside a test"
    citation = "the hf_posattn tests, after Press et al. 2022"
    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.rate = nn.Parameter(torch.full((config.num_attention_heads,), 0.05))

    def initialize(self, initializer_range):
        init.constant_(self.rate, 0.05)

    def attention_bias(self, distance, query_positions):
        return -self.rate[:, None, None] * distance[:, None].clamp(min=0).to(self.rate.dtype)


def posattn(*args) -> int:
    return main([str(arg) for arg in args])


@pytest.fixture(scope="module")
def registered():
    """The scheme, registered for this module's tests only."""
    register_scheme(DistancePenalty)
    yield DistancePenalty.name
    POSITION_SCHEMES.pop(DistancePenalty.name)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(load_shakespeare()["train"][0]["text"][:60_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(registered, text, tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry") / "model"
    assert posattn("train", "--position", registered, *FAST, "--data", text, "--output-dir", folder) == 0
    return folder


def test_the_command_line_offers_a_registered_scheme(registered):
    for command in (["train"], ["compare"], ["demo", "context"]):
        args = build_parser().parse_args([*command, "--position" + ("s" if command == ["compare"] else ""),
                                          registered])
        assert registered in (args.position if command != ["compare"] else args.positions)


def test_an_unregistered_scheme_is_refused(registered, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["train", "--position", "test_not_registered"])
    assert exit.value.code == 2
    assert registered in capsys.readouterr().err  # the choices it lists are the registry's


def test_a_registered_scheme_trains_saves_and_loads(registered, trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["position_embedding_type"] == registered
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


def test_it_is_evaluated(trained, tmp_path):
    output = tmp_path / "eval.json"
    assert posattn("evaluate", trained, "--lengths", "32,64", "--quiet", "--output", output) == 0
    report = json.loads(output.read_text())
    assert report["position_embedding_type"] == DistancePenalty.name and report["rope_parameters"] is None
    assert [row["length"] for row in report["results"]] == [32, 64]


def test_it_runs_in_compare(registered, text, tmp_path):
    from hf_posattn.study.run import CompareOptions, compare

    study = compare(CompareOptions(output_dir=str(tmp_path / "study"), positions=["alibi", registered],
                                   factors=[1, 2], seq_len=32, max_steps=2, batch_size=2, vocab_size=300,
                                   data=[str(text)]))
    assert registered in json.dumps(study["table"])
    assert (tmp_path / "study" / f"{registered}-seed0" / "config.json").exists()


def test_the_default_study_keeps_to_the_built_in_schemes(registered):
    from hf_posattn.study.run import CompareOptions, resolve_study

    # Registered at run time: selectable (above), but not added to the default study, whose time it would change.
    assert registered not in resolve_study(CompareOptions()).positions
    assert len(resolve_study(CompareOptions()).positions) == 9


def test_a_length_limit_comes_from_the_scheme(registered):
    """What makes a scheme length-bounded is its `max_length`, not its name: a registered bounded scheme is refused
    past its limit by train, as learned is."""
    from hf_posattn.study.perplexity import unbounded_schemes
    from hf_posattn.training.options import TrainingOptions, resolve

    class Bounded(DistancePenalty):
        name = "test_bounded"

        @classmethod
        def max_length(cls, config):
            return config.max_position_embeddings // 4

    register_scheme(Bounded)
    try:
        assert "test_bounded" not in unbounded_schemes() and registered in unbounded_schemes()
        assert resolve(TrainingOptions(position="test_bounded", seq_len=256)).seq_len == 256
        with pytest.raises(ValueError, match="above the 256 positions that test_bounded positions have"):
            resolve(TrainingOptions(position="test_bounded", seq_len=257))
        # Evaluation asks the same scheme: past its limit a length is skipped (a study goes on), or refused.
        from conftest import tiny_lm

        from hf_posattn.study.perplexity import evaluate_lengths_of_ids, perplexity_of_ids

        model = tiny_lm("test_bounded")  # max_position_embeddings 64: at most 16 positions
        results = evaluate_lengths_of_ids(model, list(range(3, 67)), [16, 32])
        assert "perplexity" in results[0] and results[1]["skipped"].startswith("test_bounded positions")
        with pytest.raises(ValueError, match="test_bounded positions: the model has vectors for 16"):
            perplexity_of_ids(model, list(range(3, 67)), 32)
    finally:
        POSITION_SCHEMES.pop("test_bounded")
