"""The `posattn` command line end to end: train (embedded corpus, a user's file), generate, evaluate, the model card,
push (only the network calls replaced), bad input, and Ctrl-C then --resume. Tiny settings: seconds each."""

import json
import os
import signal
import subprocess
import sys
import time

import huggingface_hub
import pytest
from conftest import posattn, run_python, snapshot
from huggingface_hub import HfApi, ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_posattn.data.corpus import load_shakespeare
from hf_posattn.study.perplexity import perplexity
from hf_posattn.runfolder import RUN_FILE

# A few steps of the tiny preset on short blocks, with a small vocabulary: seconds, not minutes.
FAST = ["--max-steps", "4", "--seq-len", "32", "--batch-size", "4", "--vocab-size", "512", "--eval-steps", "2",
        "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`posattn train` on the embedded corpus; returns the output folder."""
    folder = tmp_path_factory.mktemp("cli") / "model"
    assert posattn("train", *FAST, "--output-dir", folder) == 0
    return folder


def test_train_on_the_embedded_corpus(trained):
    names = set(os.listdir(trained))
    expected = {"config.json", "generation_config.json", "model.safetensors", "configuration_posattn.py",
                "modeling_posattn.py", "positional.py", "tokenizer.json", "tokenizer_config.json", "README.md", RUN_FILE}
    assert expected <= names, expected - names
    results = json.loads((trained / RUN_FILE).read_text())["results"]
    assert results["steps"] == 4 and results["tokens_seen"] == 4 * 4 * 32
    assert 1 < results["perplexity"] < 2 * results["unigram_perplexity"]
    assert results["sample"].startswith(results["prompt"]) and len(results["sample"]) > len(results["prompt"])

    model = AutoModelForCausalLM.from_pretrained(trained)
    assert type(model).__name__ == "PosAttnForCausalLM" and model.config.vocab_size == 512
    # Where hf_posattn is not installed: the code in the folder, and the tokenizer without remote code.
    out = run_python(
        f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(trained)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        # The tokenizer is a plain PreTrainedTokenizerFast; the flag only lets AutoTokenizer read config.json.
        tokenizer = AutoTokenizer.from_pretrained({str(trained)!r}, trust_remote_code=True)
        assert type(tokenizer).__module__.startswith("transformers."), type(tokenizer).__module__
        ids = tokenizer("ROMEO:", return_tensors="pt").input_ids
        print(model.generate(ids, max_new_tokens=5, do_sample=False)[0].tolist())
        """,
        cwd=trained,
    )
    ids = AutoTokenizer.from_pretrained(trained)("ROMEO:", return_tensors="pt").input_ids
    assert out.strip() == str(model.generate(ids, max_new_tokens=5, do_sample=False)[0].tolist())


def test_train_on_a_text_file(user_text, tmp_path, capsys):
    folder = tmp_path / "model"
    assert posattn("train", *FAST, "--seq-len", "16", "--vocab-size", "300", "--position", "alibi",
                   "--data", user_text, "--output-dir", folder) == 0
    out = capsys.readouterr().out
    assert "unigram baseline" in out and "sample:" in out
    results = json.loads((folder / RUN_FILE).read_text())["results"]
    assert results["data"] == str(user_text)
    assert AutoModelForCausalLM.from_pretrained(folder).config.position_embedding_type == "alibi"


def test_generate_streams_the_continuation(trained, capsys):
    assert posattn("generate", trained, "ROMEO:", "--max-new-tokens", "12", "--greedy") == 0
    greedy = capsys.readouterr().out
    assert greedy.startswith("ROMEO:") and len(greedy) > len("ROMEO:\n")  # the streamer ends with a newline
    assert posattn("generate", trained, "ROMEO:", "--max-new-tokens", "12", "--greedy") == 0
    assert capsys.readouterr().out == greedy
    assert posattn("generate", trained, "ROMEO:", "--max-new-tokens", "12", "--seed", "3") == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


def test_evaluate_writes_json_at_several_lengths(trained, user_text, tmp_path, capsys):
    output = tmp_path / "results" / "eval.json"  # a folder that does not exist yet is made
    assert posattn("evaluate", trained, "--lengths", "32", "--output", output) == 0
    report = json.loads(output.read_text())
    assert report["unigram_baseline"]["perplexity"] > 1
    # One definition of the unigram baseline: the same text gives the same figure in train and evaluate.
    recorded = json.loads((trained / RUN_FILE).read_text())["results"]["unigram_perplexity"]
    assert report["unigram_baseline"]["perplexity"] == pytest.approx(recorded, rel=1e-12)
    # Non-overlapping windows of the training length are the blocks training evaluated on: the same loss.
    results = json.loads((trained / RUN_FILE).read_text())["results"]
    assert report["results"][0]["loss"] == pytest.approx(results["eval_loss"], rel=1e-4)

    assert posattn("evaluate", trained, "--data", user_text, "--lengths", "16,32", "--stride", "8") == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["length"] for r in report["results"]] == [16, 32]
    for result in report["results"]:
        assert result["stride"] == 8 and result["perplexity"] > 1
        assert result["tokens"] == result["length"] - 1 + 8 * (result["windows"] - 1)  # every token scored once


def test_learned_positions_are_evaluated_up_to_their_maximum(trained):
    from conftest import tiny_lm

    from hf_posattn.study.perplexity import evaluate_lengths

    tokenizer = AutoTokenizer.from_pretrained(trained)
    model = tiny_lm("learned", vocab_size=len(tokenizer), max_position_embeddings=64)
    text = load_shakespeare()["validation"][0]["text"][:5000]
    results = evaluate_lengths(model, tokenizer, text, [32, 64, 128])
    assert [r["length"] for r in results] == [32, 64, 128]
    assert results[1]["perplexity"] > 1
    assert "learned positions" in results[2]["skipped"] and "64" in results[2]["skipped"]
    with pytest.raises(ValueError, match="max_position_embeddings"):
        perplexity(model, tokenizer, text, 65)


def test_model_card_metadata(trained):
    card = ModelCard.load(trained / "README.md")
    results = json.loads((trained / RUN_FILE).read_text())["results"]
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation"
    assert {"hf_posattn", "sinusoidal-positions"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert "pypi.org" not in card.text  # no link to a package page that does not exist
    assert card.data.eval_results[0].metric_type == "perplexity"
    assert card.data.eval_results[0].metric_value == pytest.approx(results["perplexity"], abs=1e-3)
    for text in ("trust_remote_code=True", f"{results['steps']} of", "unigram baseline", results["hardware"],
                 "| `num_hidden_layers` | 4 |", "## Limitations"):
        assert text in card.text, text


def test_push_uploads_a_folder_that_loads_as_remote_code(trained, tmp_path, monkeypatch):
    """The real push path, with only the Hub's two network calls replaced to capture what would be sent."""
    captured = {}

    def create_repo(self, repo_id, **kwargs):
        captured["repo"] = repo_id

    def create_commit(self, repo_id, operations, **kwargs):
        captured["operations"] = list(operations)
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message="",
                                          commit_description="", oid="0" * 40)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    before = snapshot(trained)
    assert posattn("push", trained, "someone/tiny-posattn", "--token", "hf_test") == 0
    assert snapshot(trained) == before
    assert captured["repo"] == "someone/tiny-posattn"

    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for operation in captured["operations"]:
        source = operation.path_or_fileobj
        data = open(source, "rb").read() if isinstance(source, str) else source
        (pushed / operation.path_in_repo).write_bytes(data)
    names = set(os.listdir(pushed))
    assert {"config.json", "configuration_posattn.py", "modeling_posattn.py", "positional.py", "model.safetensors",
            "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert not any(name.startswith("checkpoint") or name == "training_args.bin" for name in names)
    assert "auto_map" in json.loads((pushed / "config.json").read_text())
    assert 'from_pretrained("someone/tiny-posattn", trust_remote_code=True)' in (pushed / "README.md").read_text()
    out = run_python(
        f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
        model = AutoModelForCausalLM.from_pretrained({str(pushed)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(pushed)!r}, trust_remote_code=True)
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
        print(generator("ROMEO:", max_new_tokens=5, do_sample=False)[0]["generated_text"])
        """,
        cwd=pushed,
    )
    assert out.startswith("ROMEO:")


def captured_push(monkeypatch) -> dict:
    """The real push path, with only the Hub's two network calls replaced: returns what would be sent, by name."""
    sent = {}

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            source = operation.path_or_fileobj
            sent[operation.path_in_repo] = open(source, "rb").read() if isinstance(source, str) else source
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message="",
                                          commit_description="", oid="0" * 40)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: None)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return sent


def test_push_uploads_only_what_the_run_wrote_and_none_of_this_machines_paths(trained, user_text, tmp_path,
                                                                               monkeypatch, capsys):
    """A run whose --data, --tokenizer and --output-dir are paths here: the run file and card that are uploaded name
    them by their base names (the local run file keeps them whole, for --resume); a *.safetensors the run did not
    write is not uploaded; a symbolic link among the files (to anything, anywhere) stops the push."""
    folder = tmp_path / "model"
    assert posattn("train", *[a for a in FAST if a not in ("--vocab-size", "512")], "--data", user_text,
                   "--tokenizer", trained, "--output-dir", folder) == 0
    local = json.loads((folder / RUN_FILE).read_text())
    assert local["options"]["data"] == [str(user_text)] and local["options"]["tokenizer"] == str(trained)
    (folder / "model-private.safetensors").write_bytes(b"not the run's")
    sent = captured_push(monkeypatch)
    before = snapshot(folder)
    assert posattn("push", folder, "someone/tiny", "--token", "hf_test") == 0
    assert "not uploaded: model-private.safetensors" in capsys.readouterr().err and snapshot(folder) == before
    assert "model-private.safetensors" not in sent and "model.safetensors" in sent
    machine = str(tmp_path.parent).encode()
    assert [name for name, data in sent.items() if machine in data] == []
    shared = json.loads(sent[RUN_FILE])
    assert shared["options"]["data"] == [user_text.name] and shared["options"]["tokenizer"] == trained.name
    assert shared["options"]["output_dir"] == shared["results"]["output_dir"] == "model"
    assert shared["results"]["data"] == user_text.name and f"--data {user_text.name}" in sent["README.md"].decode()

    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    for name in ("tokenizer.json", "positional.py"):  # one the run file lists, one that config.json's code imports
        original = folder / name
        original.rename(tmp_path / name)
        original.symlink_to(secret)
        sent.clear()
        assert posattn("push", folder, "someone/tiny", "--token", "hf_test") == 2
        err = capsys.readouterr().err
        assert f"{name} is a symbolic link: push uploads only the files a run wrote" in err, err
        assert sent == {}
        original.unlink()
        (tmp_path / name).rename(original)


def test_a_reused_tokenizer_is_checked_before_any_work(trained, user_text, tmp_path, capsys):
    """--tokenizer brings its own vocabulary: another --vocab-size is refused (it would be recorded and not used),
    as is a tokenizer without an end-of-text token (documents are joined with it) or a damaged one."""
    output = tmp_path / "out"
    assert posattn("train", *FAST[:6], "--vocab-size", "300", "--data", user_text, "--tokenizer", trained,
                   "--output-dir", output) == 2
    assert f"--tokenizer {trained} has 512 tokens, and --vocab-size 300 asks for another" in capsys.readouterr().err
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.BPE())
    words.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words.train_from_iterator([user_text.read_text()], trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=words).save_pretrained(tmp_path / "no-eos")
    assert posattn("train", *FAST[:6], "--data", user_text, "--tokenizer", tmp_path / "no-eos",
                   "--output-dir", output) == 2
    assert "its tokenizer has no end-of-text token (eos_token)" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "tokenizer.json").write_text((trained / "tokenizer.json").read_text()[:500])
    assert posattn("train", *FAST[:6], "--data", user_text, "--tokenizer", damaged, "--output-dir", output) == 2
    err = capsys.readouterr().err
    assert f"{damaged / 'tokenizer.json'} cannot be read" in err and "Traceback" not in err
    assert not output.exists()


def test_push_offline_or_without_a_token_changes_nothing(trained, tmp_path, monkeypatch, capsys):
    def network(self, *args, **kwargs):
        raise AssertionError("no request may be sent")

    monkeypatch.setattr(HfApi, "create_repo", network)
    monkeypatch.setattr(HfApi, "create_commit", network)
    before = snapshot(trained)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert posattn("push", trained, "someone/model", "--token", "hf_test") == 2
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in capsys.readouterr().err

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    assert posattn("push", trained, "someone/model") == 2
    assert "not logged in" in capsys.readouterr().err
    assert snapshot(trained) == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("empty", "holds no text"),
        ("latin1", "is not UTF-8 text (byte 0xf9 at offset 1"),
        ("learned-too-long", "--seq-len 2048 is above the 1024 positions"),
        ("no-run-to-resume", "holds no run of `posattn train` to continue"),
        ("short-validation", "the validation text is shorter than one block"),
        ("seq-len-1", "--seq-len 1: the model learns to predict each token of a block from the tokens before it"),
    ],
)
def test_bad_input_gets_a_clear_error(case, message, tmp_path, capsys):
    data = tmp_path / "data.txt"
    args = ["train", *FAST, "--output-dir", tmp_path / "out", "--data", data]
    if case == "empty":
        data.write_text("  \n\n")
    elif case == "latin1":
        data.write_bytes("Où est la sortie?\n".encode("latin-1"))
    elif case == "learned-too-long":
        data.write_text("text\n")
        args += ["--position", "learned", "--seq-len", "2048"]
    elif case == "no-run-to-resume":
        args += ["--resume"]
    elif case == "short-validation":
        data.write_text("To be, or not to be, that is the question.\n" * 200)
        args += ["--seq-len", "512"]
    elif case == "seq-len-1":  # the loss would be NaN at once, and blamed on the learning rate
        data.write_text("To be, or not to be, that is the question.\n" * 200)
        args += ["--seq-len", "1"]
    assert posattn(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("posattn train: error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_an_output_dir_with_a_model_is_refused_unless_overwrite(trained, user_text, tmp_path, capsys):
    before = snapshot(trained)
    assert posattn("train", *FAST, "--data", user_text, "--output-dir", trained) == 2
    assert "already holds a model" in capsys.readouterr().err
    # --overwrite with bad data: the error comes before anything is removed.
    assert posattn("train", *FAST, "--data", tmp_path / "missing.txt", "--output-dir", trained, "--overwrite") == 2
    assert "no such file" in capsys.readouterr().err
    # A seed transformers cannot take is refused by the command line, before anything is removed.
    with pytest.raises(SystemExit) as exited:
        posattn("train", *FAST, "--data", user_text, "--output-dir", trained, "--overwrite", "--seed", "-1")
    assert exited.value.code == 2 and "expected a seed from 0 to 2**32 - 1" in capsys.readouterr().err
    assert snapshot(trained) == before

    folder = tmp_path / "model"
    assert posattn("train", *FAST, "--seq-len", "16", "--data", user_text, "--output-dir", folder) == 0
    assert posattn("train", *FAST, "--seq-len", "16", "--data", user_text, "--output-dir", folder,
                   "--position", "rotary", "--overwrite") == 0
    assert AutoModelForCausalLM.from_pretrained(folder).config.position_embedding_type == "rotary"
    assert posattn("train", *FAST, "--output-dir", folder, "--resume", "--position", "alibi") == 2
    assert "started with --position rotary (now --position alibi)" in capsys.readouterr().err


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues_from_it(user_text, tmp_path):
    folder = tmp_path / "model"
    command = [sys.executable, "-m", "hf_posattn", "train", "--data", str(user_text), "--output-dir", str(folder),
               "--seq-len", "16", "--batch-size", "2", "--vocab-size", "300", "--max-steps", "100000",
               "--save-steps", "5", "--eval-steps", "100000", "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(folder.glob("checkpoint-*/trainer_state.json")):  # older checkpoints are rotated away
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert f"Continue with --resume and the same --output-dir {folder}" in err and "resume=True" not in err
    checkpoints = sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))
    last = checkpoints[-1]
    assert last >= 5 and not (folder / "model.safetensors").exists()
    assert json.loads((folder / RUN_FILE).read_text())["results"] is None

    resume = [sys.executable, "-m", "hf_posattn", "train", "--output-dir", str(folder), "--resume",
              "--max-steps", str(last + 3)]  # not quiet: the Trainer's warnings show
    resumed = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {folder / f'checkpoint-{last}'}" in resumed.stderr  # notices go to stderr
    assert "missing keys" not in resumed.stderr  # the tied head is not saved, and not missed
    results = json.loads((folder / RUN_FILE).read_text())["results"]
    assert results["steps"] == last + 3
    assert results["tokens_seen"] == (last + 3) * 2 * 16  # the steps before the interruption count too


def test_python_m_hf_posattn_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "hf_posattn", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "generate", "evaluate", "push"):
        assert command in out.stdout


def test_train_logs_to_tensorboard_draws_its_training_and_the_card_and_push_show_it(tmp_path):
    """--report-to reaches the Trainer's own TensorBoard callback; the finished run holds training.png (from its
    trainer_state.json), its card shows the figure, and push uploads it with the model."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hf_posattn.sharing.hub import files_to_push

    folder = tmp_path / "logged"
    assert posattn("train", *FAST, "--report-to", "tensorboard", "--output-dir", folder) == 0
    names = set(os.listdir(folder))
    assert {"training.png", "trainer_state.json", "runs"} <= names, names
    events = [os.path.join(root, name) for root, _, files in os.walk(folder / "runs") for name in files
              if name.startswith("events.out.tfevents")]
    assert events
    accumulator = EventAccumulator(os.path.dirname(events[0]))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]
    assert (folder / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](training.png)" in (folder / "README.md").read_text()
    assert "training.png" in files_to_push(str(folder))
    # The folder stays a run: --resume recognises it (and says it has finished) instead of calling it foreign.
    assert posattn("train", *FAST, "--report-to", "tensorboard", "--output-dir", folder, "--resume") == 2
    # plot-training redraws it from the folder.
    assert posattn("plot-training", folder, "--output", tmp_path / "again.png") == 0
    assert (tmp_path / "again.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_logging_integration_is_refused_before_any_work(tmp_path, capsys):
    import importlib.util

    assert importlib.util.find_spec("comet_ml") is None  # the case this test is about
    assert posattn("train", *FAST, "--report-to", "comet_ml", "--output-dir", tmp_path / "never") == 2
    assert "pip install" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_scale_embeddings_reaches_the_model_the_run_file_and_the_card(tmp_path):
    folder = tmp_path / "vaswani"
    assert posattn("train", *FAST, "--scale-embeddings", "--output-dir", folder) == 0
    assert AutoModelForCausalLM.from_pretrained(folder).config.scale_embeddings is True
    assert json.loads((folder / RUN_FILE).read_text())["options"]["scale_embeddings"] is True
    assert "--scale-embeddings" in (folder / "README.md").read_text()
