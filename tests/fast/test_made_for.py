"""A task model is kept to its task, a language model to text: a tokenizer knows what it was made for (a task's words,
or text); every command given a model or tokenizer of the other kind refuses it before any work, with what to give
instead; text that reads mostly as <unk> is refused by the one check that training, evaluation, generation and the
attention figure share; and a word-level tokenizer's continuation keeps the space between words.

The model folders here are saved by hand (no Trainer): a tiny model with a task's tokenizer or a BPE trained on a
play, as `posattn train` would leave them, and a study's shared task tokenizer alone.
"""

import pytest
import torch
from conftest import SCHEMES, posattn, tiny_config

from hf_posattn import PosAttnConfig, PosAttnForCausalLM
from hf_posattn.data.corpus import load_shakespeare
from hf_posattn.data.tasks import LANGUAGE_MODELLING, TASKS, made_for
from hf_posattn.data.tokenizers import MOST_UNKNOWN, check_known_tokens, encode_documents, train_tokenizer
from hf_posattn.model.positional import POSITION_SCHEMES
from hf_posattn.sharing.generation import continuation, generate_text
from hf_posattn.study.perplexity import perplexity
from hf_posattn.training.options import TrainingOptions
from hf_posattn.training.plan import plan_training

PROSE = "ROMEO: But soft, what light through yonder window breaks?"


def save_model(folder, tokenizer):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    PosAttnForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "play.txt"
    path.write_text(load_shakespeare()["train"][0]["text"][:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def folders(play, tmp_path_factory):
    """What a user may hand a command: a passkey run's model, a study's shared copy-task tokenizer (a folder with a
    tokenizer and no model), a language model of text."""
    root = tmp_path_factory.mktemp("kinds")
    study_tokenizer = root / "study" / "tokenizer"
    TASKS["copy"].tokenizer().save_pretrained(study_tokenizer)
    return {
        "task run": save_model(root / "passkey-run", TASKS["passkey"].tokenizer()),
        "study tokenizer": study_tokenizer,
        "lm run": save_model(root / "lm-run", train_tokenizer([play.read_text()], 300)),
    }


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_tokenizer_is_recognised_saved_and_read_back(name, tmp_path):
    TASKS[name].tokenizer().save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert name in made_for(AutoTokenizer.from_pretrained(tmp_path))


def test_a_text_tokenizer_is_made_for_text():
    assert made_for(train_tokenizer(["the pass key is 7"] * 5, 300)) == (LANGUAGE_MODELLING,)


# ---- train: --tokenizer and --init-from, each kind, with and without --task ----

# (source kind, flag, --task): whether the plan accepts it, else what the refusal must say instead.
TRAIN_CASES = [
    ("task run", "--init-from", "lm", "--task passkey"),
    ("task run", "--tokenizer", "lm", "--task passkey"),
    ("study tokenizer", "--tokenizer", "lm", "--task copy"),
    ("lm run", "--init-from", "passkey", "from scratch without --init-from"),
    ("lm run", "--tokenizer", "passkey", "Leave --tokenizer out"),
    ("task run", "--init-from", "copy", "Start the copy task from scratch without --init-from"),
    ("study tokenizer", "--tokenizer", "recall", "Leave --tokenizer out"),
    ("task run", "--init-from", "passkey", None),
    ("task run", "--tokenizer", "passkey", None),
    ("study tokenizer", "--tokenizer", "reverse", None),  # copy and reverse share their words
    ("lm run", "--init-from", "lm", None),
    ("lm run", "--tokenizer", "lm", None),
]


@pytest.mark.parametrize("kind, flag, task, instead", TRAIN_CASES)
def test_train_keeps_a_model_or_tokenizer_to_its_kind(kind, flag, task, instead, folders, play, tmp_path, capsys):
    output = tmp_path / "run"
    arguments = ["train", flag, folders[kind], "--task", task, "--output-dir", output, "--max-steps", "2",
                 "--seq-len", "32", "--quiet"] + (["--data", play] if task == LANGUAGE_MODELLING else [])
    if instead is None:  # accepted: planned in full (the Trainer would start next)
        options = TrainingOptions(task=task, output_dir=str(output), max_steps=2, seq_len=32,
                                  data=[str(play)] if task == LANGUAGE_MODELLING else None,
                                  **{flag[2:].replace("-", "_"): str(folders[kind])})
        assert plan_training(options).options.task == task
        return
    assert posattn(*arguments) == 2
    err = capsys.readouterr().err
    assert f"{flag} {folders[kind]}" in err and instead in err, err
    assert "--vocab-size" not in err  # never given here, so never named
    assert not output.exists()


# ---- evaluate, generate, plot-attention: a task model with text, a language model with text ----

def test_evaluate_refuses_a_task_model_and_says_what_scores_it(folders, play, tmp_path, capsys):
    assert posattn("evaluate", folders["task run"], "--data", play, "--lengths", "16", "--quiet") == 2
    err = capsys.readouterr().err
    assert "holds a model of the passkey task" in err and "posattn compare --task passkey" in err, err


def test_evaluate_scores_a_language_model_on_text(folders, play, capsys):
    assert posattn("evaluate", folders["lm run"], "--data", play, "--lengths", "16", "--quiet") == 0
    assert '"perplexity"' in capsys.readouterr().out


@pytest.mark.parametrize("command", ["generate", "plot-attention"])
@pytest.mark.parametrize("kind, prompt, refused", [
    ("task run", PROSE, True),
    ("task run", "<bos> the pass key is", False),
    ("lm run", PROSE, False),
])
def test_text_a_model_cannot_read_is_refused(command, kind, prompt, refused, folders, tmp_path, capsys):
    extra = ["--max-new-tokens", "3"] if command == "generate" else ["--output", tmp_path / "a.png"]
    status = posattn(command, folders[kind], prompt, *extra)
    err = capsys.readouterr().err
    assert status == (2 if refused else 0), err
    if refused:
        assert "reads as <unk> (unknown)" in err and "passkey task" in err and "task's own words" in err
        assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("use", ["training", "evaluation"])
def test_text_mostly_unknown_is_refused_by_the_one_check_from_python(use):
    tokenizer = TASKS["recall"].tokenizer()
    text = [PROSE] * 3
    with pytest.raises(ValueError, match="reads as <unk>"):
        if use == "training":
            encode_documents(tokenizer, text)
        else:
            perplexity(PosAttnForCausalLM(tiny_config(vocab_size=len(tokenizer))), tokenizer, text, 8)


@pytest.mark.parametrize("unknown, refused", [(0, False), (5, False), (6, True), (10, True)])
def test_the_limit_is_most_of_the_text(unknown, refused):
    tokenizer = TASKS["passkey"].tokenizer()
    ids = [tokenizer.unk_token_id] * unknown + [tokenizer.convert_tokens_to_ids("key")] * (10 - unknown)
    assert (unknown / 10 > MOST_UNKNOWN) == refused
    if refused:
        with pytest.raises(ValueError, match=f"{unknown * 10}% of its 10 tokens"):
            check_known_tokens(tokenizer, ids, "the text")
    else:
        check_known_tokens(tokenizer, ids, "the text")


# ---- the space between the prompt and its continuation ----

@pytest.mark.parametrize("kind, prompt, new, expected", [
    ("copy", "<bos> = a b =", ["a", "b"], " a b"),
    ("copy", "<bos> a = =", ["="], " ="),  # "=" then "=": two words, not "=="
    ("passkey", "<bos> the pass key is", ["7", "2"], " 7 2"),
    ("bpe", "ROMEO:", ["Ġthe"], " the"),  # byte-level BPE carries its own spaces: none added
])
def test_the_continuation_keeps_what_goes_between_words(kind, prompt, new, expected):
    tokenizer = train_tokenizer(["ROMEO: the the the"] * 20, 300) if kind == "bpe" else TASKS[kind].tokenizer()
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert continuation(tokenizer, prompt_ids, tokenizer.convert_tokens_to_ids(new)) == expected


def test_generated_text_of_a_task_model_separates_prompt_and_answer(folders):
    from transformers import AutoTokenizer

    folder = folders["task run"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = PosAttnForCausalLM.from_pretrained(folder).eval()
    prompt = "<bos> the pass key is"
    text = generate_text(model, tokenizer, prompt, max_new_tokens=4, greedy=True)
    rest = text[len(prompt):]
    assert text.startswith(prompt) and rest.startswith(" ") and len(rest.split()) >= 1, text
    assert set(rest.split()) <= set(tokenizer.get_vocab())


# ---- the length a run's tokenizer warns past ----

@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_run_tokenizer_warns_only_past_the_model_positions(scheme, play, tmp_path):
    """The tokenizer a run saves says the model's real limit (`model_max_length`), which transformers warns past
    ("... will result in indexing errors"): the table of a length-bounded scheme, else none; never the training
    length, past which every other scheme runs."""
    from types import SimpleNamespace
    from unittest import mock

    from transformers import tokenization_utils_base

    from hf_posattn.training.run import tokenizer_for

    options = TrainingOptions(position=scheme, data=[str(play)], vocab_size=300, seq_len=16,
                              output_dir=str(tmp_path / "run"))
    plan = plan_training(options)
    tokenizer = tokenizer_for(plan, SimpleNamespace(should_save=True))
    limit = POSITION_SCHEMES[scheme].max_length(PosAttnConfig(position_embedding_type=scheme))  # the preset's 1024
    assert tokenizer.model_max_length == (limit or tokenization_utils_base.VERY_LARGE_INTEGER)
    with mock.patch.object(tokenization_utils_base.logger, "warning") as warning:
        ids = tokenizer(play.read_text()[:12_000])["input_ids"]
    assert len(ids) > 1024 and warning.called == (limit is not None)
