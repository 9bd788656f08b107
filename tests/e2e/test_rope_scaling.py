"""Rotary context extension without retraining: `load_model(folder, rope_parameters=...)` and the command line's
--rope-scaling/--factor/--rope-parameters on evaluate, generate and `train --init-from`. Tiny models: seconds each."""

import json
import shlex

import pytest
import torch
from conftest import posattn, random_ids, run_python

from hf_posattn.cli import build_parser
from hf_posattn.sharing.loading import load_model

FAST = ["--max-steps", "4", "--seq-len", "32", "--batch-size", "4", "--vocab-size", "512", "--eval-steps", "2",
        "--quiet"]


TRAINED_LENGTH = 32


@pytest.fixture(scope="module")
def rotary(tmp_path_factory, play_text):
    """A tiny rotary model trained at length 32, on a user's text."""
    folder = tmp_path_factory.mktemp("rope") / "rotary"
    assert posattn("train", "--position", "rotary", *FAST, "--data", play_text, "--output-dir", folder) == 0
    return folder


def logits(model, length: int) -> torch.Tensor:
    with torch.no_grad():
        return model(random_ids(1, length, low=3)).logits


# Every variant transformers offers, with what it needs (longrope: one factor per feature pair, short and long).
HALF_HEAD = 256 // 4 // 2  # the tiny preset's head size, halved: one factor per feature pair


VARIANTS = {
    "linear": {"rope_type": "linear", "factor": 4},
    "dynamic": {"rope_type": "dynamic", "factor": 4},
    "yarn": {"rope_type": "yarn", "factor": 4},
    "llama3": {"rope_type": "llama3", "factor": 4, "low_freq_factor": 1, "high_freq_factor": 4},
    "longrope": {"rope_type": "longrope", "factor": 4, "short_factor": [1.0] * HALF_HEAD,
                 "long_factor": [4.0] * HALF_HEAD},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_scaling_changes_the_logits_past_the_training_length(rotary, variant):
    plain, _ = load_model(str(rotary))
    scaled, _ = load_model(str(rotary), rope_parameters=VARIANTS[variant])
    assert scaled.config.rope_parameters["rope_type"] == variant
    assert scaled.config.rope_parameters["rope_theta"] == plain.config.rope_parameters["rope_theta"]  # its own base
    long = 3 * TRAINED_LENGTH
    past = (logits(scaled, long) - logits(plain, long))[:, TRAINED_LENGTH:].abs().max()
    assert past > 1e-5, variant  # a model trained for 4 steps: small differences, but not zero (see default)
    for name, tensor in plain.state_dict().items():  # the weights are the trained ones
        torch.testing.assert_close(scaled.state_dict()[name], tensor, msg=name)


@pytest.mark.parametrize("variant", ["yarn", "llama3", "longrope"])
def test_variants_that_extend_from_a_length_extend_from_the_training_length(rotary, variant):
    scaled, _ = load_model(str(rotary), rope_parameters=VARIANTS[variant])
    assert scaled.config.rope_parameters["original_max_position_embeddings"] == TRAINED_LENGTH


@pytest.mark.parametrize("variant", ["dynamic"])  # longrope scales every score by its attention factor, at any length
def test_length_dependent_variants_leave_inputs_within_the_training_length_alone(rotary, variant):
    plain, _ = load_model(str(rotary))
    scaled, _ = load_model(str(rotary), rope_parameters=VARIANTS[variant])
    torch.testing.assert_close(logits(scaled, TRAINED_LENGTH), logits(plain, TRAINED_LENGTH))


def test_default_changes_nothing(rotary):
    plain, _ = load_model(str(rotary))
    scaled, _ = load_model(str(rotary), rope_parameters={"rope_type": "default"})
    torch.testing.assert_close(logits(scaled, 3 * TRAINED_LENGTH), logits(plain, 3 * TRAINED_LENGTH))


def test_evaluate_records_the_rope_parameters_used(rotary, play_text, tmp_path):
    scaled, plain = tmp_path / "scaled.json", tmp_path / "plain.json"
    common = ["--lengths", "32,96", "--data", play_text, "--quiet"]
    assert posattn("evaluate", rotary, *common, "--rope-scaling", "yarn", "--factor", "4", "--output", scaled) == 0
    assert posattn("evaluate", rotary, *common, "--output", plain) == 0
    scaled, plain = json.loads(scaled.read_text()), json.loads(plain.read_text())
    assert scaled["rope_parameters"] == {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                         "original_max_position_embeddings": TRAINED_LENGTH}
    assert plain["rope_parameters"]["rope_type"] == "default"
    assert scaled["results"][1]["loss"] != plain["results"][1]["loss"]
    as_json = tmp_path / "json.json"
    assert posattn("evaluate", rotary, *common, "--rope-parameters", '{"rope_type": "yarn", "factor": 4}',
                   "--output", as_json) == 0
    assert json.loads(as_json.read_text())["results"] == scaled["results"]


def test_generate_with_a_scaling_runs_past_the_training_length(rotary, capsys):
    assert posattn("generate", rotary, "ROMEO:", "--greedy", "--max-new-tokens", 60, "--rope-scaling", "dynamic",
                   "--factor", "4") == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_init_from_fine_tunes_longer_with_a_scaling(rotary, play_text, tmp_path):
    """`train --init-from` starts from the model's weights (at a learning rate too small to move them, they stay),
    with its tokenizer and scheme, at a longer --seq-len; its config.json loads as remote code with the scaling."""
    output = tmp_path / "longer"
    assert posattn("train", "--init-from", rotary, "--seq-len", 64, "--rope-scaling", "yarn", "--factor", "2",
                   "--learning-rate", "1e-12", "--max-steps", 2, "--batch-size", 2, "--quiet", "--data", play_text,
                   "--output-dir", output) == 0
    source, _ = load_model(str(rotary))
    tuned, _ = load_model(str(output))
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], tensor, rtol=1e-5, atol=1e-5, msg=name)
    assert (output / "tokenizer.json").read_text() == (rotary / "tokenizer.json").read_text()
    printed = run_python(f"""
        import json
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained({str(output)!r}, trust_remote_code=True)
        print(json.dumps(config.rope_parameters))
    """, cwd=tmp_path)
    rope = json.loads(printed.strip().splitlines()[-1])
    assert rope["rope_type"] == "yarn" and rope["factor"] == 2 and rope["original_max_position_embeddings"] == 32
    # The card's command gives the same run: --init-from and the rope parameters as JSON.
    command = next(line for line in (output / "README.md").read_text().splitlines() if "posattn train" in line)
    args = build_parser().parse_args(shlex.split(command[command.index("posattn train"):].strip("`"))[1:])
    assert args.init_from == str(rotary) and args.rope_json == {"rope_type": "yarn", "factor": 2.0}


@pytest.mark.parametrize("extra, named", [
    (["--position", "alibi"], "position"),
    (["--vocab-size", "999"], "--vocab-size 999"),  # named as it was given
    (["--tokenizer", "elsewhere"], "tokenizer"),
])
def test_init_from_refuses_options_its_model_fixes(rotary, tmp_path, extra, named, capsys):
    assert posattn("train", "--init-from", rotary, *FAST, *extra, "--output-dir", tmp_path / "x") == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_rope_scaling_without_a_model_to_scale_is_refused(tmp_path, capsys):
    assert posattn("train", "--position", "rotary", "--rope-scaling", "yarn", "--factor", "2", *FAST,
                   "--output-dir", tmp_path / "x") == 2
    assert "--init-from" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("damaged", ["model.safetensors", "tokenizer.json"])
def test_a_damaged_init_from_is_refused_before_the_run_folder_is_touched(damaged, rotary, play_text, tmp_path,
                                                                         capsys):
    """The model of --init-from is read whole before the run's folder is claimed: refused, it leaves nothing, and
    the same command succeeds once the model is mended (no half-started run is in the way)."""
    import shutil

    source = tmp_path / "source"
    shutil.copytree(rotary, source)
    good = (source / damaged).read_bytes()
    (source / damaged).write_bytes(good[: len(good) // 2])
    command = ["train", "--init-from", source, "--max-steps", 2, "--seq-len", 32, "--batch-size", 2, "--quiet",
               "--data", play_text, "--output-dir", tmp_path / "tuned"]
    assert posattn(*command) == 2
    err = capsys.readouterr().err
    assert f"{source / damaged}" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]
    (source / damaged).write_bytes(good)
    assert posattn(*command) == 0
