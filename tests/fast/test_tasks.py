"""The synthetic tasks: each generator's format and answers on known seeds, exact match by decoding on a model whose
answers are known, each task's training recipe (what its loss reads), randomized positions in training and in
decoding, the accuracy tables, and the bad input the tasks add."""

import random

import pytest
import torch
from conftest import BIAS_SCHEMES, ROOT, SCHEMES, TABLE_SCHEMES, assert_png, posattn, tiny_lm

from hf_posattn import PosAttnConfig, PosAttnForCausalLM
from hf_posattn.data.tasks import TASKS, Example
from hf_posattn.data.tasks.common import EVERY_TOKEN, LOSSES
from hf_posattn.data.tasks.passkey import DEPTHS, KEY_DIGITS
from hf_posattn.data.tasks.recall import PAIRS, QUERIES
from hf_posattn.data.tasks.training import example_blocks, task_texts
from hf_posattn.figures.study import read_study
from hf_posattn.figures.tasks import plot_accuracy, plot_depth_grid, plot_perplexity_beside_passkey
from hf_posattn.study.options import CompareOptions, resolve_study
from hf_posattn.study.kind import markdown_table, study_kind
from hf_posattn.study.summary import DRAWN_RESULTS, summarize
from hf_posattn.study.tasks import (
    breakdown_key,
    decode_answers,
    evaluation_positions,
    evaluation_sets,
    passkey_summaries,
)
from hf_posattn.training.options import TrainingOptions, complete, resolve_paths
from hf_posattn.training.positions import RandomPositions

LENGTHS = [30, 31, 64, 128, 512]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("name", list(TASKS))
def test_examples_fit_the_length_and_every_word_is_in_the_vocabulary(name, length):
    task = TASKS[name]
    tokenizer = task.tokenizer()
    for purpose in ("train", "evaluation"):
        for example in task.examples(1, length, 8, purpose):
            assert example.words[0] == "<bos>"
            assert len(example) <= length and (purpose == "train" or len(example) >= length - 1)
            ids = tokenizer(example.text(), add_special_tokens=False)["input_ids"]
            assert len(ids) == len(example) and tokenizer.unk_token_id not in ids  # one word, one token
            assert all(0 < start < end <= len(example) for start, end in example.answers)


@pytest.mark.parametrize("name", list(TASKS))
def test_the_same_seed_gives_the_same_examples_and_another_seed_others(name):
    task = TASKS[name]
    assert task.examples(3, 64, 5) == task.examples(3, 64, 5)
    assert task.examples(3, 64, 5) != task.examples(4, 64, 5)
    assert task.examples(0, 64, 5, "evaluation") != task.examples(0, 64, 5)  # training never sees the test set


def test_passkey_answer_is_the_key_at_its_depth():
    task = TASKS["passkey"]
    for depth in DEPTHS:
        example = task.example(random.Random(0), 100, depth)
        (start, end), = example.answers
        key = example.words[start:end]
        assert len(key) == KEY_DIGITS and all(word.isdigit() for word in key)
        hidden = example.text().index(" ".join(("the pass key is", *key, ". remember it")))
        filler = 100 - task.min_length
        assert example.text()[:hidden].count(" ") == 1 + round(depth * filler)  # <bos>, then the filler before it
        assert example.words[start - 10:start] == ("what", "is", "the", "pass", "key", "?", "the", "pass", "key", "is")
    grid = task.examples(0, 64, 2, "evaluation")
    assert [tags["depth"] for example in grid for tags in example.tags] == [d for d in DEPTHS for _ in range(2)]


def test_recall_answers_are_the_values_of_the_pairs_asked_again():
    for example in TASKS["recall"].examples(5, 64, 20, "evaluation"):
        pairs = {example.words[i]: example.words[i + 1] for i in range(1, len(example) - 1)
                 if example.words[i].startswith("k") and example.words[i + 1].startswith("v")}
        assert len(example.answers) == QUERIES == PAIRS and len(pairs) == PAIRS
        assert {example.words[start - 1] for start, _ in example.answers} == set(pairs)  # every key queried
        for (start, end), tags in zip(example.answers, example.tags):
            key, value = example.words[start - 1], example.words[start:end]
            assert value == (pairs[key],)
            first = example.words.index(key)
            assert tags["distance"] == (start - 1) - first  # from the pair's key to the query


@pytest.mark.parametrize("name, answer", [("copy", lambda s: s), ("reverse", lambda s: s[::-1])])
def test_copy_and_reverse_answer_the_string(name, answer):
    example = TASKS[name].example(random.Random(2), 21)
    size = example.tags[0]["string_length"]
    assert size == 9 and example.words[size + 1] == "="
    (start, end), = example.answers
    assert list(example.words[start:end]) == answer(list(example.words[1:size + 1]))
    lengths = {len(e) for e in TASKS[name].examples(0, 64, 200)}
    assert min(lengths) < 16 and max(lengths) >= 63  # trained on every string size that fits L


def test_training_blocks_pad_each_example_to_the_length_and_leave_padding_out_of_the_loss():
    task = TASKS["copy"]
    blocks = example_blocks(task_texts(task, 0, 32, 20), task.tokenizer(), 32)
    for row in blocks["train"]:
        kept = sum(row["attention_mask"])
        assert len(row["input_ids"]) == 32 and row["labels"][:kept] == row["input_ids"][:kept]
        assert set(row["labels"][kept:]) <= {-100} and row["input_ids"][0] == task.tokenizer().bos_token_id


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", list(TASKS))
def test_the_loss_reads_every_real_token_or_only_the_answers(name, loss):
    task = TASKS[name]
    texts = task_texts(task, 0, 64, 12)
    blocks = example_blocks(texts, task.tokenizer(), 64, loss)
    for split in ("train", "validation"):
        for row, spans in zip(blocks[split], texts[split]["answers"]):
            answers = {i for start, end in spans for i in range(start, end)}
            read = {i for i, label in enumerate(row["labels"]) if label != -100}
            assert answers and read == (set(range(sum(row["attention_mask"]))) if loss == EVERY_TOKEN else answers)
            assert all(row["labels"][i] == row["input_ids"][i] for i in read)  # the model shifts them itself


def test_each_task_declares_what_its_loss_reads_and_how_long_its_examples_are():
    recipes = {name: (task.loss, task.train_lengths) for name, task in TASKS.items()}
    assert recipes == {"passkey": ("every token", "L"), "recall": ("answers", "up to L"),
                       "copy": ("answers", "up to L"), "reverse": ("answers", "up to L")}
    assert min(len(e) for e in TASKS["recall"].examples(0, 64, 100)) < 32  # pairs at every distance that fits L
    assert {len(e) for e in TASKS["passkey"].examples(0, 64, 20)} == {64}
    assert study_kind("recall").settings(None, None) == {"loss": "answers", "train_lengths": "up to L"}


def always_says(word: str, task) -> PosAttnForCausalLM:
    """A model whose every next word is `word`: its last norm outputs ones, and only `word`'s row of the LM head
    reads them."""
    tokenizer = task.tokenizer()
    config = PosAttnConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = PosAttnForCausalLM(config).eval()
    with torch.no_grad():
        model.model.norm.weight.zero_()
        model.model.norm.bias.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(word)] = 1.0
    return model


def test_exact_match_is_scored_by_decoding_the_whole_answer():
    task = TASKS["copy"]
    model, tokenizer = always_says("a", task), task.tokenizer()
    examples = [Example(("<bos>", "a", "a", "=", "a", "a"), ((4, 6),), ({"string_length": 2},)),
                Example(("<bos>", "a", "b", "=", "a", "b"), ((4, 6),), ({"string_length": 2},)),  # 1 word of 2 right
                Example(("<bos>", "b", "=", "b"), ((3, 4),), ({"string_length": 1},))]
    assert [answer["correct"] for answer in decode_answers(model, tokenizer, examples)] == [True, False, False]


def test_teacher_forcing_reads_higher_than_decoding():
    """Where the answer's first word is wrong, decoding carries the error on; the argmax given the true words does
    not: the second word of [b, a] is 'a' for this model either way, but decoded it follows a wrong 'a'."""
    task = TASKS["copy"]
    model = always_says("a", task)
    example = Example(("<bos>", "b", "a", "=", "b", "a"), ((4, 6),), ({"string_length": 2},))
    [answer] = decode_answers(model, task.tokenizer(), [example])
    ids = torch.tensor([task.tokenizer().convert_tokens_to_ids(list(example.words))])
    forced = model(ids).logits[0, 3:5].argmax(-1).tolist()
    assert not answer["correct"] and forced[1] == ids[0, 5].item()


def test_recall_distances_fall_in_bins_of_doubling_lengths():
    task = TASKS["recall"]
    assert [breakdown_key(task, d, 64) for d in (1, 63, 64, 127, 128, 400)] == ["<64", "<64", "<128", "<128",
                                                                                  "<256", "<512"]
    assert breakdown_key(TASKS["passkey"], 0.25, 64) == "0.25"


def test_passkey_summaries_are_the_longest_lengths_that_pass():
    row = {"exact_match": {64: 1.0, 128: 0.9, 256: 0.5, 512: 0.1},
           "by": {64: {"0": 1.0, "1": 1.0}, 128: {"0": 0.8, "1": 1.0}, 256: {"0": 0.3, "1": 0.7},
                  512: {"0": 0.0, "1": 0.2}}}
    assert passkey_summaries(row, [64, 128, 256, 512]) == {"every_depth_20": 256, "mean_80": 128}


def test_random_positions_are_ordered_within_range_and_change_per_batch():
    collator = RandomPositions(512, seed=0)
    features = [{"input_ids": list(range(64)), "labels": list(range(64))} for _ in range(3)]
    batches = [collator(features)["position_ids"] for _ in range(20)]
    for positions in batches:
        assert positions.shape == (3, 64) and (positions == positions[0]).all()  # one draw per batch
        assert (positions[0, 1:] > positions[0, :-1]).all() and 0 <= positions.min() and positions.max() < 512
    assert len({tuple(positions[0].tolist()) for positions in batches}) == 20
    assert max(int(positions.max()) for positions in batches) > 256  # they reach past the training length


@pytest.mark.parametrize("scheme", BIAS_SCHEMES)
def test_random_positions_reach_the_score_bias_schemes(scheme):
    """Positions that skip change a score-bias scheme's output; the same positions shifted do not where only
    distances count (FIRE also reads how far the query is from the start)."""
    model = tiny_lm(scheme)
    with torch.no_grad():  # a trained bias, not its starting one (T5's table starts at zero)
        for parameter in model.model.positions.parameters():
            parameter.normal_(0, 1)
    ids = torch.randint(3, 90, (1, 12), generator=torch.Generator().manual_seed(0))
    spread = torch.tensor([[0, 3, 4, 9, 15, 20, 22, 30, 31, 40, 47, 50]])
    with torch.no_grad():
        plain = model(ids).logits
        skipping = model(ids, position_ids=spread).logits
        shifted = model(ids, position_ids=spread + 5).logits
    assert not torch.allclose(plain, skipping, atol=1e-4)
    if scheme in TABLE_SCHEMES:
        torch.testing.assert_close(skipping, shifted, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_decoding_on_drawn_positions_reads_them_as_teacher_forcing_does(scheme):
    """`generate` given the positions of the prompt and of the tokens to come decodes what a forward over the same
    positions predicts: the new tokens read the drawn positions (not the last prompt position + 1), and a score
    bias reads the cached keys' drawn positions (not their slots). Scales large enough for positions to matter."""
    model = tiny_lm(scheme, max_position_embeddings=512, initializer_range=0.3)
    generator = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, 97, (3, 10), generator=generator)
    positions = torch.randperm(400, generator=generator)[:16].sort().values.expand(3, 16).clone()
    written = model.generate(prompt, attention_mask=torch.ones_like(prompt), position_ids=positions,
                             do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=0, use_cache=True)
    with torch.no_grad():
        forced = model(written, position_ids=positions).logits[:, 9:15].argmax(-1)
    assert torch.equal(forced, written[:, 10:])


def test_evaluation_positions_are_one_sorted_draw_per_example_the_same_for_every_model():
    sets = evaluation_sets(TASKS["copy"], [32, 64], count=5)
    drawn = evaluation_positions(sets, 64)
    assert drawn == evaluation_positions(sets, 64)
    for length, examples in sets.items():
        for example, positions in zip(examples, drawn[length]):
            assert len(positions) == len(example) and positions == sorted(set(positions))
            assert 0 <= positions[0] and positions[-1] < 64
    assert len({tuple(positions) for positions in drawn[32]}) == 5  # one draw per example


def test_a_twin_is_scored_on_drawn_positions_beside_plain_ones_and_its_row_shows_the_drawn():
    task, kind = TASKS["copy"], study_kind("copy")
    sets = evaluation_sets(task, [32, 64], count=5)
    material = {"sets": sets, "seq_len": 32, "positions": evaluation_positions(sets, 64)}
    model, tokenizer = always_says("a", task), task.tokenizer()
    assert kind.evaluate_run(model, tokenizer, TrainingOptions(task="copy"), material, [32, 64]) == {}
    twin = kind.evaluate_run(model, tokenizer, TrainingOptions(task="copy", random_positions=64), material, [32, 64])
    assert [r["length"] for r in twin[DRAWN_RESULTS]] == [32, 64] and all(
        r["answers"] == 5 for r in twin[DRAWN_RESULTS])

    def scored(at_l):
        return [{"length": 32, "exact_match": at_l, "answers": 5, "by": {}},
                {"length": 64, "exact_match": 0.0, "answers": 5, "by": {}}]

    record = {"position": "alibi", "random_positions": 64, "parameters": 1, "train_seconds": 60.0,
              "results": scored(0.2), DRAWN_RESULTS: scored(1.0)}
    [row] = summarize([record], ["alibi"], [32, 64], kind)
    assert row["positions"] == "drawn" and row["exact_match"][32] == 1.0 and row["learned"]
    assert row["plain"]["exact_match"][32] == 0.2
    study = task_study([{**row, "label": "alibi + random positions", "parameters": 4e5}], task="copy")
    study["settings"].update(lengths=[32, 64], seq_len=32, random_positions=64)
    assert "scored on sorted positions drawn from [0, 64)" in markdown_table(study)


def task_study(rows, task="passkey", seeds=(0,)):
    return {"settings": {"lengths": [64, 128], "seq_len": 64, "seeds": list(seeds), "task": task, "preset": "task",
                         "max_steps": 10},
            "task": task, "task_description": "d", "table": rows}


def accuracy_row(label, at_l, at_2l, learned=None):
    return {"label": label, "position": label, "extension": None, "random_positions": False, "parameters": 4e5,
            "seeds": 1, "exact_match": {64: at_l, 128: at_2l}, "low": {64: None, 128: None},
            "high": {64: None, 128: None}, "learned": at_l >= 0.95 if learned is None else learned,
            "by": {64: {"0": at_l}, 128: {"0": at_2l}}, "every_depth_20": None, "mean_80": None}


def test_the_accuracy_table_marks_a_scheme_that_did_not_learn_the_task():
    table = markdown_table(task_study([accuracy_row("alibi", 1.0, 0.9), accuracy_row("rotary", 0.4, 0.0)]))
    assert "| alibi | 0.40M | 1.00 | 0.90 |" in table
    assert "rotary (did not learn at L)" in table and "one seed" in table


@pytest.mark.parametrize("loss, phrase", [("answers", "the loss on the answers only"),
                                          ("every token", "the loss on every token")])
def test_the_table_says_what_the_loss_read(loss, phrase):
    study = task_study([accuracy_row("alibi", 1.0, 0.9)])
    study["settings"].update(loss=loss, train_lengths="up to L")
    assert f"trained at L = 64 ({phrase}, examples of lengths drawn up to L)" in markdown_table(study)


def test_a_study_row_summarises_seeds_and_flags_learning():
    study = study_kind("passkey")
    results = [[{"length": 64, "exact_match": e, "answers": 5, "by": {"0": e}},
                {"length": 128, "exact_match": e / 2, "answers": 5, "by": {"0": e / 2}}] for e in (1.0, 0.9, 0.95)]
    row = study.summarize_results(results, [64, 128])
    assert row["exact_match"][64] == pytest.approx(0.95) and row["low"][64] < 0.95 < row["high"][64]
    assert row["learned"] and row["mean_80"] == 64 and row["every_depth_20"] == 128


@pytest.mark.parametrize("options, message", [
    (dict(task="sorting"), "unknown task 'sorting'"),
    # From Python, a refusal names the arguments as given (the command line names its flags: test_messages.py).
    (dict(task="passkey", data=["text.txt"]), r"data=\[.*text.txt'\]: the passkey task makes its own examples"),
    (dict(task="copy", vocab_size=100), "vocab_size=100: the copy task makes its own examples"),
    (dict(task="passkey", seq_len=20), "passkey: an example of 20 tokens cannot hold the task's format"),
    (dict(task="recall", position="none", random_positions=1024), "none positions read no position"),
    (dict(task="recall", position="alibi", random_positions=32), "--random-positions 32: the model meets lengths of up to 64 tokens \\(--seq-len 64\\)"),
])
def test_a_training_option_that_does_not_apply_to_the_task_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        complete(resolve_paths(TrainingOptions(**options)))


@pytest.mark.parametrize("options, message", [
    (dict(task="sorting"), "unknown task 'sorting'"),
    (dict(task="passkey", random_positions=256), r"meets lengths of up to 512 tokens \(--seq-len 64 x --factors 8\)"),
    (dict(task="passkey", positions=["none"], random_positions=512), "read no position"),
    (dict(task="reverse", data=["x.txt"]), r"data=\[.*x.txt'\]: the reverse task"),
])
def test_a_study_option_that_does_not_apply_is_refused(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        resolve_study(CompareOptions(output_dir=str(tmp_path / "study"), **options))


def test_a_task_study_takes_the_task_preset_and_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = resolve_study(CompareOptions(task="passkey", quick=True))
    assert options.preset == "task" and options.seq_len == 64 and options.max_steps == 1500
    assert options.output_dir == str(tmp_path / "runs" / "compare-passkey-quick")
    assert len(options.positions) == 5 and options.vocab_size == TASKS["passkey"].vocab_size


def test_the_command_line_refuses_bad_task_options_with_status_2(tmp_path, capsys):
    assert posattn("compare", "--task", "passkey", "--vocab-size", "50", "--output-dir", tmp_path / "s") == 2
    assert "--vocab-size 50: the passkey task" in capsys.readouterr().err
    assert posattn("train", "--task", "copy", "--position", "none", "--random-positions", "512") == 2
    assert not (tmp_path / "s").exists()


def test_a_recorded_passkey_study_gives_its_table_and_figures(tmp_path):
    """docs/tasks-passkey-quick.json, the quick passkey study as measured, read back: its Markdown table is the one
    in docs, and every figure of a task study (and the one beside the perplexity study) is drawn from it."""
    passkey = read_study(str(ROOT / "docs" / "tasks-passkey-quick.json"))
    assert markdown_table(passkey) == (ROOT / "docs" / "tasks-passkey-quick.md").read_text().rstrip("\n")
    assert_png(plot_accuracy(passkey, str(tmp_path / "accuracy.png")), (1000, 550))
    assert_png(plot_depth_grid(passkey, str(tmp_path / "depths.png")), (1300, 480))
    recall = read_study(str(ROOT / "docs" / "tasks-recall-quick.json"))  # its own recipe, said in the caption
    assert markdown_table(recall) == (ROOT / "docs" / "tasks-recall-quick.md").read_text().rstrip("\n")
    assert "(the loss on the answers only, examples of lengths drawn up to L)" in markdown_table(recall)
    twin = read_study(str(ROOT / "docs" / "tasks-passkey-alibi-twin.json"))  # a twin's row: its drawn positions
    assert markdown_table(twin) == (ROOT / "docs" / "tasks-passkey-alibi-twin.md").read_text().rstrip("\n")
    assert twin["table"][1]["positions"] == "drawn" and twin["table"][1]["plain"]["exact_match"][64] == 0.01
    lm = read_study(str(ROOT / "docs" / "study-compare.json"))
    assert_png(plot_perplexity_beside_passkey(lm, passkey, str(tmp_path / "beside.png")), (1200, 320))
