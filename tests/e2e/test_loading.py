"""A model folder is checked before a command uses it: every kind of damage (a tensor missing, extra or of another
shape, a foreign model_type, unreadable weights, a damaged config.json, tokenizer.json or run file) is refused by
every command that loads a model, with exit status 2, a message naming the file, and no traceback. The Python API
keeps transformers' behaviour."""

import json
import shutil

import pytest
import torch
from conftest import posattn
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_posattn.sharing.hub import files_to_push
from hf_posattn.runfolder import RUN_FILE


def edit_weights(change):
    def damage(folder):
        tensors = load_file(folder / "model.safetensors")
        change(tensors)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return damage


def edit_json(name, change):
    def damage(folder):
        path = folder / name
        content = json.loads(path.read_text())
        path.write_text(json.dumps(change(content)))
    return damage


def write(name, data: bytes):
    def damage(folder):
        (folder / name).write_bytes(data)
    return damage


def truncate_file(name):
    def damage(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return damage


def remove(name):
    def damage(folder):
        (folder / name).unlink()
    return damage


LAYER_WEIGHT = "model.layers.0.mlp.up_proj.weight"
DAMAGES = {
    "missing-tensor": (edit_weights(lambda t: t.pop(LAYER_WEIGHT)), "model.safetensors", "missing tensors: "
                                                                                         + LAYER_WEIGHT),
    "missing-layer": (edit_weights(lambda t: [t.pop(k) for k in list(t) if k.startswith("model.layers.1.")]),
                      "model.safetensors", "missing tensors: model.layers.1."),
    "extra-tensor": (edit_weights(lambda t: t.update({"model.extra.weight": torch.zeros(3)})), "model.safetensors",
                     "unexpected tensors: model.extra.weight"),
    "mis-shaped-tensor": (edit_weights(lambda t: t.update({LAYER_WEIGHT: torch.zeros(3, 3)})), "model.safetensors",
                          "tensors of another shape: " + LAYER_WEIGHT),
    "truncated-weights": (truncate_file("model.safetensors"), "model.safetensors", "cannot be read"),
    "empty-weights": (write("model.safetensors", b""), "model.safetensors", "cannot be read"),
    "no-weights": (remove("model.safetensors"), "", "holds no weights"),
    "foreign-model-type": (edit_json("config.json", lambda c: {**c, "model_type": "gpt2"}), "config.json",
                           "model_type 'gpt2'"),
    "no-model-type": (edit_json("config.json", lambda c: {k: v for k, v in c.items() if k != "model_type"}),
                      "config.json", "model_type None"),
    "config-not-json": (write("config.json", b"{\"model_type\": "), "config.json", "cannot be read"),
    "config-bad-field": (edit_json("config.json", lambda c: {**c, "hidden_size": "wide"}), "config.json",
                         "hidden_size"),
    "tokenizer-truncated": (truncate_file("tokenizer.json"), "tokenizer.json", "cannot be read"),
    "tokenizer-not-a-tokenizer": (write("tokenizer.json", b"{}"), "tokenizer.json", "cannot be read as a tokenizer"),
    "tokenizer-too-large": (edit_json("config.json", lambda c: {**c, "vocab_size": 10}), "tokenizer.json",
                            "more than the model's 10"),
    "run-file-not-json": (truncate_file(RUN_FILE), RUN_FILE, "cannot be read"),
    "run-file-edited": (write(RUN_FILE, b"[1, 2]"), RUN_FILE, "not a run file"),
    "no-tokenizer": (remove("tokenizer.json"), "", "no tokenizer.json"),
    # Every JSON file loading reads is named when damaged, not blamed on another or replaced by defaults.
    "tokenizer-config-truncated": (truncate_file("tokenizer_config.json"), "tokenizer_config.json", "cannot be read"),
    "generation-config-truncated": (truncate_file("generation_config.json"), "generation_config.json", "cannot be read"),
    "generation-config-not-an-object": (write("generation_config.json", b"[0.8]"), "generation_config.json",
                                        "holds no JSON object"),
}
COMMANDS = {
    "generate": lambda folder, tmp: ["generate", folder, "ROMEO:", "--max-new-tokens", "2"],
    "evaluate": lambda folder, tmp: ["evaluate", folder, "--lengths", "16"],
    "plot-attention": lambda folder, tmp: ["plot-attention", folder, "ROMEO:", "--output", tmp / "a.png"],
    "plot-positions": lambda folder, tmp: ["plot-positions", folder, "--output", tmp / "p.png"],
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_model_folder_is_refused_by_every_command(damage, finished_run, play_text, tmp_path, capsys):
    change, name, message = DAMAGES[damage]
    folder = tmp_path / "model"
    shutil.copytree(finished_run, folder)
    change(folder)
    for command, arguments in COMMANDS.items():
        # In this process: an exception that escaped `main` (a traceback) would fail the test here.
        assert posattn(*arguments(folder, tmp_path)) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"posattn {command}: error: {folder / name}"), (command, err)
        assert message in err, (command, err)
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("path, message", [("no/such/path", "does not exist"), ("play.txt", "is a file"),
                                           ("empty", "holds no model (no config.json)")])
def test_a_path_without_a_model_is_named(path, message, finished_run, play_text, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    shutil.copy(play_text, tmp_path / "play.txt")
    for command, arguments in COMMANDS.items():
        assert posattn(*arguments(tmp_path / path, tmp_path)) == 2
        assert f"{tmp_path / path} {message}" in capsys.readouterr().err


def test_an_unfinished_run_says_how_to_finish_it(finished_run, play_text, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / RUN_FILE).write_text(json.dumps({"options": {}, "results": None}))
    assert posattn("generate", folder, "ROMEO:") == 2
    err = capsys.readouterr().err
    assert "has not finished" in err and f"--output-dir {folder} --resume" in err


def test_the_python_api_keeps_transformers_behaviour(finished_run, play_text, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(finished_run, folder)
    edit_weights(lambda t: t.pop(LAYER_WEIGHT))(folder)
    model, report = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert report["missing_keys"] == {LAYER_WEIGHT}


def test_a_good_model_loads_without_a_loading_bar(finished_run, play_text, capsys):
    assert posattn("generate", finished_run, "ROMEO:", "--max-new-tokens", "3", "--greedy") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ROMEO:")
    assert "Loading weights" not in captured.err and "LOAD REPORT" not in captured.err


@pytest.mark.parametrize("command", ["generate", "plot-attention"])
def test_text_that_is_not_valid_unicode_is_refused(command, finished_run, play_text, tmp_path, capsys):
    prompt = "ROMEO \udcff:"  # how Python hands over a byte that is not UTF-8 from the shell
    arguments = [command, finished_run, prompt] + (["--output", tmp_path / "a.png"] if command != "generate" else [])
    with pytest.raises(SystemExit) as exited:
        posattn(*arguments)
    assert exited.value.code == 2 and "not valid UTF-8 text" in capsys.readouterr().err


def test_the_saved_tokenizer_keeps_the_model_limit_not_the_training_length(finished_run, play_text):
    """A sinusoidal model runs at any length: its saved tokenizer neither warns past --seq-len 16 nor truncates
    there (the model's own limit per scheme: tests/fast/test_made_for.py)."""
    tokenizer = AutoTokenizer.from_pretrained(finished_run)
    assert tokenizer.model_max_length > 10**20  # transformers' "no limit"
    ids = tokenizer(play_text.read_text()[:5000], truncation=True)["input_ids"]
    assert len(ids) > 16


def test_push_sends_only_the_code_the_model_loads(finished_run, play_text, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(finished_run, folder)
    (folder / "my_notes.py").write_text("secret = 1\n")
    (folder / "scratch.py").write_text("import os\n")
    code = {name for name in files_to_push(str(folder)) if name.endswith(".py")}
    assert {"configuration_posattn.py", "modeling_posattn.py", "positional.py"} <= code
    assert not code & {"my_notes.py", "scratch.py"}


def test_evaluate_shows_progress_unless_quiet(finished_run, play_text, capsys):
    assert posattn("evaluate", finished_run, "--lengths", "16", "--data", play_text) == 0
    captured = capsys.readouterr()
    assert "length 16" in captured.err
    json.loads(captured.out)  # the JSON alone on stdout
    assert posattn("evaluate", finished_run, "--lengths", "16", "--data", play_text, "--quiet") == 0
    assert "length 16" not in capsys.readouterr().err
