"""What a scheme registered at run time may and may not change: the command line refuses an unregistered name and
lists the registered ones, the default study keeps to the built-in schemes, and a length limit comes from the
scheme's `max_length` (train refuses past it; evaluation skips or refuses). That a registered scheme goes through
every tool is tests/e2e/test_registry.py."""

import pytest
from conftest import DistancePenalty

from hf_posattn.cli import build_parser
from hf_posattn.model.positional import POSITION_SCHEMES, register_scheme


def test_an_unregistered_scheme_is_refused(penalty_registered, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["train", "--position", "test_not_registered"])
    assert exit.value.code == 2
    assert penalty_registered in capsys.readouterr().err  # the choices it lists are the registry's


def test_the_default_study_keeps_to_the_built_in_schemes(penalty_registered):
    from hf_posattn.study.options import CompareOptions, resolve_study

    # Registered at run time: selectable (above), but not added to the default study, whose time it would change.
    assert penalty_registered not in resolve_study(CompareOptions()).positions
    assert len(resolve_study(CompareOptions()).positions) == 9


def test_a_length_limit_comes_from_the_scheme(penalty_registered):
    """What makes a scheme length-bounded is its `max_length`, not its name: a registered bounded scheme is refused
    past its limit by train, as learned is."""
    from hf_posattn.model.positional import unbounded_schemes
    from hf_posattn.training.options import TrainingOptions, complete, resolve_paths

    class Bounded(DistancePenalty):
        name = "test_bounded"

        @classmethod
        def max_length(cls, config):
            return config.max_position_embeddings // 4

    register_scheme(Bounded)
    try:
        assert "test_bounded" not in unbounded_schemes() and penalty_registered in unbounded_schemes()
        assert complete(resolve_paths(TrainingOptions(position="test_bounded", seq_len=256))).seq_len == 256
        with pytest.raises(ValueError, match="above the 256 positions that test_bounded positions have"):
            complete(resolve_paths(TrainingOptions(position="test_bounded", seq_len=257)))
        # Evaluation asks the same scheme: past its limit a length is skipped (a study goes on), or refused.
        from conftest import tiny_lm

        from hf_posattn.study.perplexity import evaluate_lengths_of_ids, perplexity_of_ids

        model = tiny_lm("test_bounded")  # max_position_embeddings 64: at most 16 positions
        results = evaluate_lengths_of_ids(model, list(range(3, 67)), [16, 32])
        assert "perplexity" in results[0]
        assert results[1]["skipped"].startswith("past the 16 positions that test_bounded positions have")
        with pytest.raises(ValueError, match="length 32, past the 16 positions that test_bounded positions have"):
            perplexity_of_ids(model, list(range(3, 67)), 32)
    finally:
        POSITION_SCHEMES.pop("test_bounded")
