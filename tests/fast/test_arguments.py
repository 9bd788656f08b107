"""The public Python entries name the bad argument: a wrong type is a TypeError, a value out of the command line's
bounds a ValueError, each naming the argument and what it accepts, before any work; one string where a list is
expected is one item, never a list of characters."""

import dataclasses
import re

import pytest
import torch

from conftest import VOCAB, random_ids, tiny_lm
from hf_posattn import CompareOptions, TrainingOptions, compare, evaluate_lengths, generate_text, perplexity, train
from hf_posattn import cli_types, load_texts, train_tokenizer
from hf_posattn.arguments import MAX_PLOTTED_DIMENSIONS, MAX_PLOTTED_POSITIONS
from hf_posattn.figures.positions import plot_positions
from hf_posattn.lesson.context import context_demo
from hf_posattn.lesson.lookup import attend, lookup_demo
from hf_posattn.model.positional import sinusoidal_table
from hf_posattn.study import options as study_options
from hf_posattn.training import options as training_options

# (field, value, error, what the message says): each a mistake a notebook makes.
OPTION_MISTAKES = [
    ("max_steps", "3", TypeError, "max_steps must be an integer, got '3' (str)"),
    ("max_steps", 0, ValueError, "max_steps must be a positive integer, got 0"),
    ("max_steps", True, TypeError, "max_steps must be an integer, got True (bool)"),
    ("seq_len", 16.5, TypeError, "seq_len must be an integer, got 16.5 (float)"),
    ("seq_len", -4, ValueError, "seq_len must be a positive intege"),
    ("batch_size", "16", TypeError, "batch_size must be an intege"),
    ("vocab_size", 4096.0, TypeError, "vocab_size must be an intege"),
    ("eval_steps", 0, ValueError, "eval_steps must be a positive intege"),
    ("random_positions", "512", TypeError, "random_positions must be an intege"),
    ("learning_rate", "1e-3", TypeError, "learning_rate must be a number, got '1e-3' (str)"),
    ("learning_rate", 0.0, ValueError, "learning_rate must be a finite number greater than 0"),
    ("learning_rate", float("nan"), ValueError, "learning_rate must be a finite number greater than 0, got nan"),
    ("learning_rate", float("inf"), ValueError, "learning_rate must be a finite numbe"),
    ("seed", "1", TypeError, "seed must be an integer, got '1' (str)"),
    ("seed", -1, ValueError, "seed must be an integer from 0 to 4294967295"),
    ("seed", 2**32, ValueError, "seed must be an integer from 0 to 4294967295"),
    ("quiet", "yes", TypeError, "quiet must be True or False"),
    ("scale_embeddings", 1, TypeError, "scale_embeddings must be True or False"),
    ("position", ["alibi"], TypeError, "position must be a string, got ['alibi'] (list)"),
    ("preset", 1, TypeError, "preset must be a string"),
    ("data", 5, TypeError, "data must be a path"),
    ("data", ["a.txt", 5], TypeError, "data[1] must be a path"),
    ("output_dir", 3, TypeError, "output_dir must be a path"),
    ("report_to", 5, TypeError, "report_to must be a string"),
    ("rope_parameters", "yarn", TypeError, "rope_parameters must be a dict"),
    ("sample_prompt", 7, TypeError, "sample_prompt must be a string"),
]
STUDY_MISTAKES = [
    ("seeds", "0", TypeError, "seeds must be an integer, got '0' (str)"),
    ("seeds", [0, -1], ValueError, "seeds[1] must be an integer from 0 to 4294967295"),
    ("factors", [1, 2.5], TypeError, "factors[1] must be an intege"),
    ("factors", [0], ValueError, "factors[0] must be a positive intege"),
    ("positions", 3, TypeError, "positions must be a string"),
    ("eval_tokens", 1e4, TypeError, "eval_tokens must be an intege"),
    ("quick", "true", TypeError, "quick must be True or False"),
    # The fields every run shares are checked as the training options check them.
    *[mistake for mistake in OPTION_MISTAKES if mistake[0] in study_options.SHARED],
]


@pytest.mark.parametrize("field, value, error, message", OPTION_MISTAKES)
def test_training_options_name_the_bad_field(field, value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        TrainingOptions(**{field: value})


@pytest.mark.parametrize("field, value, error, message", STUDY_MISTAKES)
def test_compare_options_name_the_bad_field(field, value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        CompareOptions(**{field: value})


@pytest.mark.parametrize("options, fields", [(TrainingOptions, training_options.FIELD_CHECKS),
                                             (CompareOptions, study_options.FIELD_CHECKS)])
def test_every_option_is_checked(options, fields):
    """A field added to the options without a check would take any value: none is."""
    assert set(fields) == {field.name for field in dataclasses.fields(options)}


@pytest.mark.parametrize("options, field, given, kept", [
    (TrainingOptions, "data", "small.txt", ["small.txt"]),
    (TrainingOptions, "report_to", "none", ["none"]),
    (CompareOptions, "positions", "alibi", ["alibi"]),
    (CompareOptions, "data", "small.txt", ["small.txt"]),
    (CompareOptions, "seeds", 0, [0]),
    (CompareOptions, "factors", 4, [4]),
    (TrainingOptions, "data", ("a.txt", "b.txt"), ("a.txt", "b.txt")),
    (CompareOptions, "seeds", (0, 1), (0, 1)),
])
def test_one_value_where_a_list_is_expected_is_one_item(options, field, given, kept):
    assert getattr(options(**{field: given}), field) == kept


def test_the_defaults_and_the_command_lines_values_are_accepted_unchanged():
    assert TrainingOptions() == TrainingOptions(**{f.name: f.default for f in dataclasses.fields(TrainingOptions)})
    assert CompareOptions().seeds == (0,) and CompareOptions().factors == (1, 2, 4, 8)
    assert TrainingOptions(seq_len=torch.tensor(64).numpy().astype("int64").item()).seq_len == 64


def test_a_scheme_given_alone_to_a_study_is_one_scheme(tmp_path):
    study = study_options.resolve_study(CompareOptions(output_dir=str(tmp_path / "s"), positions="alibi", seeds=1))
    assert study.positions == ["alibi"] and study.seeds == [1]


MODEL = tiny_lm()

# (function, arguments, error, what the message says)
ENTRY_MISTAKES = [
    (train, dict(options={"max_steps": 3}), TypeError, "options must be a TrainingOptions"),
    (train, dict(options=CompareOptions()), TypeError, "options must be a TrainingOptions"),
    (compare, dict(options=TrainingOptions()), TypeError, "options must be a CompareOptions"),
    (evaluate_lengths, dict(model=MODEL, tokenizer=None, text="x", lengths="128"), TypeError, "lengths must be an"),
    (evaluate_lengths, dict(model=MODEL, tokenizer=None, text="x", lengths=[128, 1]), ValueError,
     "lengths[1] must be an integer of at least 2, got 1"),
    (evaluate_lengths, dict(model=MODEL, tokenizer=None, text=5, lengths=[8]), TypeError, "text must be a string"),
    (evaluate_lengths, dict(model=MODEL, tokenizer=None, text="x", lengths=[8], stride=0), ValueError,
     "stride must be a positive intege"),
    (perplexity, dict(model=MODEL, tokenizer=None, text="x", length="64"), TypeError, "length must be an intege"),
    (perplexity, dict(model=MODEL, tokenizer=None, text="x", length=64, batch_size=2.0), TypeError,
     "batch_size must be an intege"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt=5), TypeError, "prompt must be a string"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", max_new_tokens="9"), TypeError,
     "max_new_tokens must be an intege"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", max_new_tokens=0), ValueError,
     "max_new_tokens must be a positive intege"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", temperature=float("inf")), ValueError,
     "temperature must be a finite numbe"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", top_k=-1), ValueError, "top_k must be an intege"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", seed=-5), ValueError, "seed must be an intege"),
    (generate_text, dict(model=MODEL, tokenizer=None, prompt="a", greedy="yes"), TypeError, "greedy must be True"),
    (plot_positions, dict(output="p.png", positions=10**6), ValueError,
     f"positions must be an integer from 2 to {MAX_PLOTTED_POSITIONS}, got 1000000"),
    (plot_positions, dict(output="p.png", positions=1), ValueError, "positions must be an integer from 2"),
    (plot_positions, dict(output="p.png", positions=64.0), TypeError, "positions must be an intege"),
    (plot_positions, dict(output="p.png", dim=10**9), ValueError,
     f"dim must be an integer from 2 to {MAX_PLOTTED_DIMENSIONS}"),
    (plot_positions, dict(output="p.png", dim=7), ValueError, "dim must be even"),
    (plot_positions, dict(output=None), TypeError, "output must be a path"),
    (attend, dict(queries=torch.eye(2), keys=torch.eye(2), values=torch.eye(2), temperature=0), ValueError,
     "temperature must be a finite number greater than 0, got 0"),
    (attend, dict(queries=torch.eye(2), keys=torch.eye(2), values=torch.eye(2), temperature=-1), ValueError,
     "temperature must be a finite number greater than 0, got -1"),
    (attend, dict(queries=torch.eye(2), keys=torch.eye(2), values=torch.eye(2), temperature="1"), TypeError,
     "temperature must be a numbe"),
    (sinusoidal_table, dict(positions=torch.arange(3), dim=7), ValueError, "dim must be an even intege"),
    (sinusoidal_table, dict(positions=torch.arange(3), dim=0), ValueError, "dim must be an even intege"),
    (sinusoidal_table, dict(positions=[0, 1, 2], dim=8), TypeError, "positions must be a tenso"),
    (train_tokenizer, dict(texts=5, vocab_size=300), TypeError, "texts must be a string or an iterable"),
    (train_tokenizer, dict(texts=["a b"], vocab_size="300"), TypeError, "vocab_size must be an intege"),
    (train_tokenizer, dict(texts=["a b"], vocab_size=0), ValueError, "vocab_size must be a positive intege"),
    (lookup_demo, dict(output=1), TypeError, "output must be a path"),
    (load_texts, dict(sources=5), TypeError, "sources must be a path"),
    (load_texts, dict(sources=["a.txt"], text_column=0), TypeError, "text_column must be a string"),
    (context_demo, dict(steps="200"), TypeError, "steps must be an intege"),
    (context_demo, dict(seed=-1), ValueError, "seed must be an integer from 0"),
    (context_demo, dict(position=None), TypeError, "position must be a string"),
]


@pytest.mark.parametrize("function, kwargs, error, message", ENTRY_MISTAKES,
                         ids=[f"{case[0].__name__}-{'-'.join(case[1])}-{i}" for i, case in enumerate(ENTRY_MISTAKES)])
def test_public_functions_name_the_bad_argument(function, kwargs, error, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=re.escape(message)):
        function(**kwargs)
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_the_python_entries_and_the_command_line_share_their_bounds():
    assert cli_types.MAX_PLOTTED_POSITIONS == MAX_PLOTTED_POSITIONS and cli_types.SEEDS == 2**32
    for parse, value in ((cli_types.plotted_positions, MAX_PLOTTED_POSITIONS + 1),
                         (cli_types.plotted_dimensions, MAX_PLOTTED_DIMENSIONS + 2)):
        with pytest.raises(Exception, match="expected at most"):
            parse(str(value))


def test_one_string_is_one_text_to_a_tokenizer():
    text = "the cat sat on the mat; the cat sat on the hat; " * 4
    tokenizer = train_tokenizer(text, 300)
    words = tokenizer.tokenize(" the cat sat")
    assert len(words) < len(" the cat sat")  # merges were learned: the text was read whole, not as characters


def test_one_file_is_one_source(tmp_path):
    play = tmp_path / "play.txt"
    play.write_text("".join(f"Line {i} of the play.\n\n" for i in range(40)))
    texts = load_texts(str(play))
    assert "Line 3 of the play." in "".join([*texts["train"]["text"], *texts["validation"]["text"]])


def test_attend_at_a_positive_temperature_sharpens_as_it_falls():
    queries = keys = values = torch.eye(3, dtype=torch.float64)
    weights = [attend(queries, keys, values, temperature)[1][0, 0].item() for temperature in (2.0, 1.0, 0.1)]
    assert weights == sorted(weights) and weights[-1] > 0.99


def test_sinusoidal_table_has_the_columns_asked_for():
    assert sinusoidal_table(torch.arange(5), 8).shape == (5, 8)


@pytest.mark.parametrize("shape", [(1, 6), (2, 5), (2, 7), (12,), (2, 6, 1), (6, 2)])
@pytest.mark.parametrize("given", ["input_ids", "inputs_embeds"])
def test_labels_of_another_shape_than_the_input_are_refused_naming_labels(shape, given):
    model, ids = tiny_lm(), random_ids(2, 6)
    inputs = {"input_ids": ids} if given == "input_ids" else {"inputs_embeds": model.get_input_embeddings()(ids)}
    labels = torch.randint(3, VOCAB, shape)
    with pytest.raises(ValueError, match=re.escape(f"labels has shape {tuple(shape)}, expected (2, 6), the shape")):
        model(**inputs, labels=labels)


def test_labels_of_the_input_shape_give_a_loss():
    model, ids = tiny_lm(), random_ids(2, 6)
    assert torch.isfinite(model(ids, labels=ids).loss)
    with pytest.raises(TypeError, match="labels is a list"):
        model(ids, labels=ids.tolist())
