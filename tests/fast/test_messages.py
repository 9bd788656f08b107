"""A message speaks its caller's language: a refusal or an outcome of a training run names an option as the command
line's flag (`--resume`, `--seq-len 16`) when `posattn` runs the command, and as the Python argument (`resume=True`,
`seq_len=16`) when Python called; never both, never the other. And a refusal names only what the caller gave."""

import json
import re

import pytest
from conftest import posattn

from hf_posattn.common import on_command_line, option
from hf_posattn.data.corpus import load_texts
from hf_posattn.data.tasks import TASKS
from hf_posattn.data.tokenizers import pack, train_tokenizer
from hf_posattn.files import WriteFailed
from hf_posattn.model.configuration_posattn import PosAttnConfig
from hf_posattn.runfolder import RUN_FILE, RunPlan, plan_run
from hf_posattn.training.options import TrainingOptions, complete, resolve_paths, resumed
from hf_posattn.training.outcomes import TrainingDiverged, TrainingInterrupted, TrainingWriteFailed
from hf_posattn.training.plan import resume_point, reused_tokenizer

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")  # --resume, --seq-len
ARGUMENT = re.compile(r"(?<![\w-])[a-z][a-z_]*=(?!=)")  # resume=, seq_len=


def finished_run(folder):
    folder.mkdir()
    (folder / RUN_FILE).write_text(json.dumps({"options": {}, "results": {"steps": 4}}))
    return folder


def with_checkpoint(folder):
    """`folder` with a checkpoint at step 4 (of a run finished before finishing removed them)."""
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    return folder


def task_tokenizer(folder):
    TASKS["passkey"].tokenizer().save_pretrained(folder)
    return folder


# Each case: what produces the message (given a temporary folder), and the option it must name, as
# (Python's spelling, the command line's).
CASES = {
    "interrupted": (lambda tmp: TrainingInterrupted(str(tmp), None), ("resume=True", "--resume")),
    "disk full": (lambda tmp: TrainingWriteFailed(str(tmp), WriteFailed("cannot write a checkpoint")),
                  ("resume=True", "--resume")),
    "diverged": (lambda tmp: TrainingDiverged(str(tmp), 7, "the training loss became nan", 1.0, None),
                 ("learning_rate", "--learning-rate")),
    "resume changes the run": (lambda tmp: resumed(TrainingOptions(position="alibi"), {"position": "rotary"},
                                                   str(tmp)), ("position='rotary'", "--position rotary")),
    "resume and overwrite": (lambda tmp: plan_run(str(tmp), resume=True, overwrite=True),
                             ("overwrite", "--overwrite")),
    "nothing to resume": (lambda tmp: plan_run(str(tmp / "new"), resume=True), ("resume=True", "--resume")),
    "a run is there": (lambda tmp: plan_run(str(finished_run(tmp / "run"))), ("overwrite=True", "--overwrite")),
    "finished, no checkpoint": (lambda tmp: resume_point(TrainingOptions(max_steps=8), {"steps": 4},
                                                         RunPlan(str(tmp), str(tmp), resume=True)),
                                ("init_from=", "--init-from")),
    "finished, at its steps": (lambda tmp: resume_point(TrainingOptions(max_steps=4), {"steps": 4},
                                                        RunPlan(*[str(with_checkpoint(tmp))] * 2, resume=True)),
                               ("max_steps=8", "--max-steps 8")),
    "task's words": (lambda tmp: complete(TrainingOptions(task="copy", vocab_size=100)),
                     ("vocab_size=100", "--vocab-size 100")),
    "the model's own": (lambda tmp: complete(resolve_paths(TrainingOptions(init_from=str(tmp), position="alibi")),
                                             PosAttnConfig(position_embedding_type="rotary")),
                        ("position='alibi'", "--position alibi")),
    "the tokenizer's size": (lambda tmp: complete(TrainingOptions(tokenizer=str(tmp), vocab_size=300),
                                                  tokenizer_size=512), ("vocab_size=300", "--vocab-size 300")),
    "the tokenizer's kind": (lambda tmp: reused_tokenizer(TrainingOptions(tokenizer=str(task_tokenizer(tmp))),
                                                          None, None), ("task='passkey'", "--task passkey")),
    "no such data": (lambda tmp: load_texts([str(tmp / "missing.txt")]), ("data: no such file", "--data: no such")),
    "too little text": (lambda tmp: pack(short_texts(), train_tokenizer(["a b c"] * 5, 300), 64),
                        ("seq_len=64", "--seq-len 64")),
}


def short_texts():
    from datasets import Dataset, DatasetDict

    return DatasetDict({split: Dataset.from_dict({"text": ["a b c"]}) for split in ("train", "validation")})


def message(case, tmp_path) -> str:
    make, _ = CASES[case]
    try:
        made = make(tmp_path)
    except ValueError as error:
        return str(error)
    assert isinstance(made, Exception), f"{case}: nothing was refused"
    return str(made)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("caller", ["python", "command line"])
def test_a_message_names_options_as_its_caller_gives_them(case, caller, tmp_path):
    python, command_line = CASES[case][1]
    if caller == "python":
        text = message(case, tmp_path)
        assert python in text and not FLAG.search(text), text
    else:
        with on_command_line():
            text = message(case, tmp_path)
        assert command_line in text and not ARGUMENT.search(text), text


@pytest.mark.parametrize("name, value, python, command_line", [
    ("resume", True, "resume=True", "--resume"),
    ("seq_len", 16, "seq_len=16", "--seq-len 16"),
    ("gradient_accumulation_steps", 4, "gradient_accumulation_steps=4", "--grad-accum 4"),
    ("data", ["a.txt", "b.txt"], "data=['a.txt', 'b.txt']", "--data a.txt b.txt"),
    ("output_dir", None, "output_dir", "--output-dir"),
])
def test_an_option_is_spelled_for_its_caller(name, value, python, command_line):
    assert option(name, value) == python
    with on_command_line():
        assert option(name, value) == command_line
    assert option(name, value) == python  # the command line's spelling ends with its command


def test_the_command_line_reads_its_flags_back(tmp_path, capsys):
    """The flags a message names are the command's own: the refusal's advice, given back, is accepted."""
    assert posattn("train", "--task", "copy", "--vocab-size", "100", "--output-dir", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "--vocab-size 100: the copy task" in err and "drop --vocab-size" in err and "--task lm" in err


def test_no_message_in_the_package_mixes_the_two_languages():
    """The form the caller-language rule replaced: a flag followed by its Python spelling, "--resume (resume=True)"."""
    import pathlib

    import hf_posattn

    mixed = re.compile(r"--[a-z-]+ \([a-z_]+=")
    sources = pathlib.Path(hf_posattn.__file__).parent.rglob("*.py")
    found = [f"{path.name}: {match.group()}" for path in sources for match in mixed.finditer(path.read_text())]
    assert found == []
