"""One rule for where a figure goes (`cli.WHERE_FIGURES_GO`, in `posattn --help`): the file --output names; else
NAME.png in the folder of the one model drawn; else the current folder. Every command that draws states it the same
way and follows it."""

import pytest
import torch
from conftest import posattn, tiny_config

from hf_posattn import PosAttnForCausalLM
from hf_posattn.cli import COMMANDS, WHERE_FIGURES_GO, build_parser
from hf_posattn.data.tokenizers import train_tokenizer


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "run"
    tokenizer = train_tokenizer(["ROMEO: But soft, what light through yonder window breaks?"] * 20, 300)
    torch.manual_seed(0)
    PosAttnForCausalLM(tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                   bos_token_id=tokenizer.bos_token_id,
                                   eos_token_id=tokenizer.eos_token_id)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def drawing_commands() -> list[str]:
    return [name for name in COMMANDS
            if any("--output" in action.option_strings for action in subparser(name)._actions)
            and name not in ("evaluate",)]  # evaluate's --output is its JSON


def subparser(name):
    parser = build_parser(name)
    return next(action for action in parser._actions if action.dest == "command").choices[name]


def test_the_rule_is_said_once_and_every_drawing_command_points_to_it():
    assert "current folder" in WHERE_FIGURES_GO and build_parser(None).epilog == WHERE_FIGURES_GO
    commands = drawing_commands()
    assert {"plot-positions", "plot-attention", "plot-training", "demo"} <= set(commands)
    for name in commands:
        output = next(action for action in subparser(name)._actions if "--output" in action.option_strings)
        assert "beside the model drawn, else here: see `posattn --help`" in output.help, name


@pytest.mark.parametrize("arguments, where", [
    (["plot-positions", "{model}", "--positions", "16"], "model"),
    (["plot-attention", "{model}", "ROMEO: But soft"], "model"),
    (["plot-positions", "--positions", "16"], "here"),
    (["demo", "lookup"], "here"),
])
def test_a_figure_goes_beside_the_model_it_draws_else_here(arguments, where, model_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = {path.name for path in model_folder.iterdir()}
    assert posattn(*[argument.format(model=model_folder) for argument in arguments]) == 0
    written = ({path.name for path in model_folder.iterdir()} - before) | {path.name for path in tmp_path.iterdir()}
    folder = model_folder if where == "model" else tmp_path
    assert len(written) == 1 and (folder / written.pop()).is_file()
    for path in model_folder.glob("*.png"):
        path.unlink()
