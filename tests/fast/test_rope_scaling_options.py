"""Rotary context-extension options refused before any loading: --rope-scaling on a scheme without rotation, a bad
--factor, --factor without a rope type, --rope-parameters that are not JSON or that transformers refuses (config-only
folders: the error names the options, never the missing weights). Scaling a trained model is in
tests/e2e/test_rope_scaling.py."""

import pytest
from conftest import posattn, tiny_config

from hf_posattn.sharing.loading import load_model


@pytest.fixture(scope="module")
def config_only(tmp_path_factory):
    """Folders with a config.json and nothing else: a refusal that names the options, not the missing weights, came
    before any loading."""
    folders = {}
    for scheme in ("rotary", "sinusoidal"):
        folders[scheme] = tmp_path_factory.mktemp("config-only") / scheme
        tiny_config(scheme).save_pretrained(folders[scheme])
    return folders


@pytest.mark.parametrize("scheme", ["sinusoidal", "alibi", "learned"])
def test_a_scheme_without_rotation_is_refused(config_only, tmp_path, scheme, capsys):
    folder = tmp_path / scheme
    tiny_config(scheme).save_pretrained(folder)
    assert posattn("evaluate", folder, "--rope-scaling", "linear", "--factor", "2") == 2
    error = capsys.readouterr().err
    assert f"{scheme} positions" in error and "rotary" in error and "weights" not in error
    with pytest.raises(ValueError, match="only rotary, xpos models"):
        load_model(str(folder), rope_parameters={"rope_type": "linear", "factor": 2})


@pytest.mark.parametrize("factor", ["0", "-1", "nan", "inf", "0.5", "four"])
@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_a_bad_factor_is_refused_before_loading(config_only, command, factor, capsys):
    prompt = ["ROMEO:"] if command == "generate" else []
    with pytest.raises(SystemExit) as exit:
        posattn(command, config_only["rotary"], *prompt, "--rope-scaling", "yarn", "--factor", factor)
    assert exit.value.code == 2
    assert "--factor" in capsys.readouterr().err


@pytest.mark.parametrize("text", ['{"rope_type": "yarn", "factor": 4', "[1, 2]", "yarn", ""])
def test_bad_json_is_refused_before_loading(config_only, text, capsys):
    with pytest.raises(SystemExit) as exit:
        posattn("evaluate", config_only["rotary"], "--rope-parameters", text)
    assert exit.value.code == 2
    assert "--rope-parameters" in capsys.readouterr().err


@pytest.mark.parametrize("given, named", [
    ('{"rope_type": "yarn", "factor": 0}', "factor"),
    ('{"rope_type": "linear", "factor": NaN}', "factor"),
    ('{"rope_type": "linear", "factor": true}', "factor"),
    ('{"rope_type": "longrope", "factor": 4}', "long_factor"),
    ('{"rope_type": "llama3", "factor": 4}', "low_freq_factor"),
    ('{"rope_type": "linear"}', "factor"),
    ('{"rope_type": "warp", "factor": 4}', "rope_type"),
    ('{"rope_type": 7}', "rope_type"),
])
def test_parameters_transformers_refuses_are_refused_before_loading(config_only, given, named, capsys):
    """A config-only folder: the error is about the parameters, never about the weights it lacks."""
    assert posattn("evaluate", config_only["rotary"], "--rope-parameters", given) == 2
    error = capsys.readouterr().err
    assert "rope_parameters" in error and named in error and "weights" not in error


def test_factor_needs_a_rope_type(config_only, capsys):
    assert posattn("evaluate", config_only["rotary"], "--factor", "4") == 2
    assert "--rope-scaling" in capsys.readouterr().err
