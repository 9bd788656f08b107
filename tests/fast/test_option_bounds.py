"""Options weighed against each other before any work: a bound that one option sets on another (a learned table's size,
the positions a scheme computes right in the training dtype, what the machine can draw) is refused when the options
are checked, naming both; and every scheme's numeric range, as it declares it, is what the model enforces."""

import pytest
import torch

from conftest import SCHEMES, posattn, random_ids, tiny_config, tiny_lm
from hf_posattn.model.positional import POSITION_SCHEMES
from hf_posattn.study.options import CompareOptions, resolve_study
from hf_posattn.training import options as training_options
from hf_posattn.training.options import MAX_RANDOM_POSITIONS, TrainingOptions, complete, resolve_paths

XPOS_FP32 = POSITION_SCHEMES["xpos"].numeric_max_length(tiny_config("xpos"), torch.float32)


def checked(**options):
    return complete(resolve_paths(TrainingOptions(**options)))


@pytest.mark.parametrize("options, message", [
    # A learned table holds 1024 positions (preset tiny): positions drawn past it have no vector.
    (dict(position="learned", random_positions=4096),
     r"--random-positions 4096 draws positions up to 4095, past the 1024 positions that learned positions have in "
     r"preset 'tiny' \(max_position_embeddings\)"),
    (dict(position="learned", preset="small", random_positions=1025), "past the 1024 positions that learned"),
    # xPos computes right up to its numeric limit in the training dtype (float32 on a CPU).
    (dict(position="xpos", random_positions=XPOS_FP32 + 1),
     f"past the {XPOS_FP32} positions that xpos positions compute right in torch.float32"),
    (dict(position="xpos", seq_len=XPOS_FP32 + 1), f"--seq-len {XPOS_FP32 + 1} is above the {XPOS_FP32} positions"),
    # What no machine can draw, whatever the scheme.
    *[(dict(position=scheme, random_positions=10**12), f"--random-positions {10**12}: at most {MAX_RANDOM_POSITIONS}")
      for scheme in ("sinusoidal", "rotary", "alibi", "t5", "kerple", "fire")],
    (dict(position="rotary", random_positions=MAX_RANDOM_POSITIONS + 1), "at most 16777216"),
    # Fewer positions than a block.
    (dict(position="alibi", seq_len=256, random_positions=255), r"up to 256 tokens \(--seq-len 256\)"),
])
def test_an_option_past_the_bound_another_option_sets_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        checked(**options)


@pytest.mark.parametrize("options", [
    dict(position="learned", random_positions=1024),
    dict(position="xpos", random_positions=XPOS_FP32),
    dict(position="rotary", random_positions=MAX_RANDOM_POSITIONS),
    dict(position="alibi", seq_len=256, random_positions=256),
])
def test_an_option_at_the_bound_is_accepted(options):
    assert checked(**options).random_positions == options["random_positions"]


@pytest.mark.parametrize("dtype, bf16", [(torch.float16, False), (torch.bfloat16, True)])
def test_the_bound_is_that_of_the_dtype_training_computes_in(dtype, bf16, monkeypatch):
    """On a GPU the Trainer computes in bf16 (fp16 without it): xPos's bound is that dtype's."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert training_options.training_dtype() == dtype
    limit = POSITION_SCHEMES["xpos"].numeric_max_length(tiny_config("xpos"), dtype)
    with pytest.raises(ValueError, match=f"past the {limit} positions that xpos positions compute right in {dtype}"):
        checked(position="xpos", random_positions=limit + 1)


def test_the_command_line_refuses_before_anything_is_written(tmp_path, capsys):
    for arguments in (["--position", "learned", "--random-positions", "4096"], ["--random-positions", str(10**12)]):
        assert posattn("train", *arguments, "--output-dir", tmp_path / "run") == 2
        assert "--random-positions" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    (dict(quick=True, random_positions=4096), "--random-positions 4096 draws positions up to 4095, past the 1024 "
                                              "positions that learned"),
    (dict(quick=True, positions=["alibi"], random_positions=10**12), "at most 16777216"),
    (dict(quick=True, positions=["xpos"], random_positions=XPOS_FP32 + 1), "compute right in torch.float32"),
    (dict(quick=True, positions=["alibi"], random_positions=300),
     r"--random-positions 300: the model meets lengths of up to 512 tokens \(--seq-len 64 x --factors 8\)"),
])
def test_a_study_checks_its_randomized_runs_as_training_does(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        resolve_study(CompareOptions(output_dir=str(tmp_path / "study"), **options))
    assert not (tmp_path / "study").exists()


def test_a_study_without_random_positions_keeps_learned_within_its_table(tmp_path):
    study = resolve_study(CompareOptions(output_dir=str(tmp_path / "study"), quick=True, random_positions=512))
    assert study.random_positions == 512


# ---- each scheme's numeric range ----

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_declares_its_numeric_range(scheme, dtype):
    limit = POSITION_SCHEMES[scheme].numeric_max_length(tiny_config(scheme), dtype)
    if scheme == "xpos":
        # Measured by scripts/xpos_range.py (CPU, eager): logits first wrong at position 35 552 in float32, 35 480 in
        # bfloat16, 3 808 in float16. The declared limits lie below, with room for keys up to 256 in magnitude.
        measured = {torch.float32: 35552, torch.bfloat16: 35480, torch.float16: 3808}[dtype]
        assert 0.5 * measured < limit < measured
    else:
        assert limit is None  # their tables are computed in float32 (or float64) whatever the model's dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_model_refuses_positions_past_the_range_of_its_dtype(dtype):
    model = tiny_lm("xpos").to(dtype)
    limit = POSITION_SCHEMES["xpos"].numeric_max_length(model.config, dtype)
    ids = random_ids(1, 4)
    with torch.no_grad():
        inside = model(ids, position_ids=torch.arange(limit - 4, limit)[None]).logits
        assert inside.isfinite().all()
        with pytest.raises(ValueError, match=rf"position {limit} is past the {limit} positions that xpos positions "
                                             rf"compute right in {dtype}.*Use inputs of at most {limit} tokens"):
            model(ids, position_ids=torch.arange(limit - 3, limit + 1)[None])


def test_under_autocast_the_range_is_that_of_the_autocast_dtype():
    model = tiny_lm("xpos")
    limit = POSITION_SCHEMES["xpos"].numeric_max_length(model.config, torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match="compute right in torch.bfloat16"):
            model(random_ids(1, 2), position_ids=torch.tensor([[limit - 1, limit]]))


def test_generation_past_the_range_is_refused_before_the_first_token():
    model = tiny_lm("xpos").half()
    limit = POSITION_SCHEMES["xpos"].numeric_max_length(model.config, torch.float16)
    with pytest.raises(ValueError, match=f"past the {limit} positions that xpos positions compute right in "
                                         f"torch.float16. Ask for at most {limit - 4} new tokens"):
        model.generate(random_ids(1, 4), max_new_tokens=limit, do_sample=False)


def test_a_registered_scheme_declares_its_range_through_the_registry(half_distance_registered, monkeypatch):
    """The model asks the scheme's class, whatever scheme it holds: a scheme registered at run time is held to the
    range it declares."""
    scheme, name = half_distance_registered, half_distance_registered.name
    assert scheme.numeric_max_length(tiny_config(name), torch.float32) is None  # the base class's: no limit
    monkeypatch.setattr(scheme, "numeric_max_length", classmethod(lambda cls, config, dtype: 10))
    model = tiny_lm(name)
    with torch.no_grad():
        with pytest.raises(ValueError, match=f"past the 10 positions that {name} positions"):
            model(random_ids(1, 11))
        assert model(random_ids(1, 10)).logits.isfinite().all()
