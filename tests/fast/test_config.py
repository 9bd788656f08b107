"""PosAttnConfig validates itself: a wrong value fails at construction, naming the field, value and what is allowed."""

import json

import pytest
from conftest import SCHEMES, TEST_DATA, tiny_config
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from hf_posattn import PosAttnConfig, PosAttnForCausalLM

SAVED_BEFORE = TEST_DATA / "saved-before-layout"


# (?s): the messages of @strict run over two lines, the field's name, then what is wrong with its value.
FIELD = r"(?s)Validation error for field '{}'.*"
ACROSS = r"(?s)Class validation error for validator 'validate_architecture'.*"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(position_embedding_type="rope"), FIELD.format("position_embedding_type") + r"one of 'sinusoidal'.*got 'rope'"),
        (dict(hidden_size=30, num_attention_heads=4), ACROSS + r"hidden_size=30 must be divisible by num_attention_heads=4"),
        (dict(position_embedding_type="rotary", hidden_size=36, num_attention_heads=4), ACROSS + r"hidden_size=36 .* head size .* = 9 must be even"),
        (dict(position_embedding_type="sinusoidal", hidden_size=33, num_attention_heads=3), ACROSS + r"hidden_size=33 .* must be even"),
        (dict(vocab_size=0), FIELD.format("vocab_size") + r"positive integer, got 0"),
        (dict(num_hidden_layers=-1), FIELD.format("num_hidden_layers") + r"positive integer, got -1"),
        (dict(num_attention_heads=0), FIELD.format("num_attention_heads")),
        (dict(intermediate_size=2.5), FIELD.format("intermediate_size") + r"expected int, got float"),
        (dict(max_position_embeddings=0), FIELD.format("max_position_embeddings")),
        (dict(type_vocab_size=-1), FIELD.format("type_vocab_size") + r"greater or equal to 0, got -1"),
        (dict(hidden_dropout_prob=1.0), FIELD.format("hidden_dropout_prob") + r"smaller than 1.0, got 1.0"),
        (dict(attention_probs_dropout_prob=-0.1), FIELD.format("attention_probs_dropout_prob")),
        (dict(position_embedding_type="rotary", rope_theta=0), ACROSS + r"rope_parameters=.* its rope_theta .* "
         r"must be a positive, finite number"),
        (dict(position_embedding_type="xpos", rope_theta=float("inf")), ACROSS + r"its rope_theta"),
        (dict(position_embedding_type="rotary", rope_parameters={"rope_type": "default", "rope_theta": "1e4"}),
         ACROSS + r"its rope_theta"),
        (dict(initializer_range=float("inf")), FIELD.format("initializer_range") + r"got inf"),
        (dict(initializer_range=float("nan")), FIELD.format("initializer_range") + r"got nan"),
        (dict(layer_norm_eps=float("inf")), FIELD.format("layer_norm_eps") + r"got inf"),
        (dict(hidden_dropout_prob=float("nan")), FIELD.format("hidden_dropout_prob") + r"got nan"),
        (dict(embedding_layer_norm="false"), FIELD.format("embedding_layer_norm") + r"expected bool, got str"),
        (dict(tie_word_embeddings=0), FIELD.format("tie_word_embeddings") + r"expected bool, got int"),
        (dict(use_cache="yes"), FIELD.format("use_cache") + r"expected bool"),
        (dict(scale_embeddings=1), FIELD.format("scale_embeddings") + r"expected bool"),
        (dict(vocab_size=True), FIELD.format("vocab_size") + r"expected int, got bool"),
        (dict(position_embedding_type="t5", relative_attention_num_buckets=2.5),
         ACROSS + r"relative_attention_num_buckets=2.5 is invalid .*: expected a positive integer"),
        (dict(position_embedding_type="t5", relative_attention_num_buckets=1),
         ACROSS + r"relative_attention_num_buckets=1 is invalid .*: T5 buckets need at least 2"),
        (dict(position_embedding_type="t5", relative_attention_num_buckets=32, relative_attention_max_distance=16),
         ACROSS + r"relative_attention_max_distance=16 is invalid .* must be larger"),
        (dict(position_embedding_type="xpos", hidden_size=36, num_attention_heads=4), ACROSS + r"hidden_size=36 .* = 9 must be even"),
        (dict(position_embedding_type="rotary", rope_parameters={"rope_type": "linear"}),
         r"(?s)validate_rope.*Missing required keys .* \{'factor'\}"),
        (dict(position_embedding_type="xpos", rope_parameters={"rope_type": "spiral"}),
         ACROSS + r"rope_parameters=.* its rope_type must be one of 'default', 'linear'"),
        (dict(layer_norm_eps=-1e-5), FIELD.format("layer_norm_eps") + r"got -1e-05"),
        (dict(initializer_range=0.0), FIELD.format("initializer_range") + r"greater than 0.0"),
        (dict(hidden_act="swishy"), FIELD.format("hidden_act") + r"got swishy"),
    ],
)
def test_invalid_values_raise_at_construction(overrides, message):
    """Refused as transformers' own configs refuse a value (`@strict`), naming the field and what is wrong."""
    with pytest.raises(StrictDataclassError, match=message):
        tiny_config(**overrides)


def test_valid_configs_round_trip(tmp_path):
    config = tiny_config("alibi", type_vocab_size=0, embedding_layer_norm=False)
    config.save_pretrained(tmp_path)
    loaded = PosAttnConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.head_dim == 8


def test_a_config_edited_after_construction_is_checked():
    """A field's own values are checked when it is set; checks across fields when the model is built."""
    config = tiny_config()
    for field, value in (("position_embedding_type", "rotray"), ("initializer_range", float("inf")),
                         ("embedding_layer_norm", "false"), ("hidden_size", 0)):
        with pytest.raises(StrictDataclassError, match=f"field '{field}'"):
            setattr(config, field, value)
    config.num_attention_heads = 5
    with pytest.raises(StrictDataclassError, match="hidden_size=32 must be divisible by num_attention_heads=5"):
        PosAttnForCausalLM(config)


def test_rope_parameters_are_checked_only_for_the_schemes_that_read_them():
    """transformers refuses an odd rotary head size over 4; schemes without rotation have no such limit."""
    assert tiny_config("alibi", hidden_size=38, num_attention_heads=2).head_dim == 19
    with pytest.raises(StrictDataclassError, match="hidden_size=38 is invalid .*: rotary positions rotate pairs"):
        tiny_config("rotary", hidden_size=38, num_attention_heads=2)


def test_rope_theta_goes_into_rope_parameters_as_transformers_puts_it():
    assert tiny_config("rotary", rope_theta=500.0).rope_parameters == {"rope_type": "default", "rope_theta": 500.0}
    config = tiny_config("rotary", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 300.0})
    assert config.rope_parameters["rope_theta"] == 300.0 and not hasattr(config, "rope_theta")


# The fields that only some schemes read, each with a value that would be valid for such a scheme.
SCHEME_FIELDS = {"rope_parameters": {"rope_type": "linear", "factor": 2.0}, "rope_theta": 500.0,
                 "rope_scaling": {"rope_type": "linear", "factor": 2.0},
                 "relative_attention_num_buckets": 16, "relative_attention_max_distance": 64}
READERS = {"rope_parameters": ("rotary", "xpos"), "rope_theta": ("rotary", "xpos"), "rope_scaling": ("rotary", "xpos"),
           "relative_attention_num_buckets": ("t5",), "relative_attention_max_distance": ("t5",)}


@pytest.mark.parametrize("field", SCHEME_FIELDS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_config_holds_only_the_fields_its_scheme_reads(scheme, field, tmp_path):
    """A field the scheme does not read is refused, given to the class, to `AutoConfig.for_model`, or found in a
    config.json; one it reads is kept, saved and loaded. Nonsense is refused either way."""
    readers = READERS[field]
    given = {field: SCHEME_FIELDS[field]}
    if scheme in readers:
        config = AutoConfig.for_model("posattn", position_embedding_type=scheme, hidden_size=32, num_attention_heads=4,
                                      **given)
        stored = "rope_parameters" if field.startswith("rope") else field
        assert hasattr(config, stored)
        config.save_pretrained(tmp_path)
        assert stored in json.loads((tmp_path / "config.json").read_text())
        assert getattr(AutoConfig.from_pretrained(tmp_path), stored) == getattr(config, stored)
        return
    with pytest.raises(StrictDataclassError, match=rf"(?s)field '{field}'.*position_embedding_type='{scheme}' does "
                                                   rf"not read it \(it is read by '{readers[0]}'"):
        AutoConfig.for_model("posattn", position_embedding_type=scheme, **given)
    config = tiny_config(scheme)
    assert hasattr(config, "rope_parameters") == (scheme in READERS["rope_parameters"])
    with pytest.raises(StrictDataclassError, match=f"field '{field}'"):
        setattr(config, field, SCHEME_FIELDS[field])
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert not {name for name in READERS if scheme not in READERS[name]} & set(saved)
    (tmp_path / "config.json").write_text(json.dumps({**saved, field: SCHEME_FIELDS[field]}))
    with pytest.raises(ValueError, match=rf"(?s)config.json: .*field '{field}'.*position_embedding_type='{scheme}'"):
        AutoConfig.from_pretrained(tmp_path)


def test_nonsense_rope_parameters_are_refused_for_every_scheme():
    for scheme in SCHEMES:
        with pytest.raises(StrictDataclassError, match="rope_parameters"):
            tiny_config(scheme, rope_parameters={"rope_type": "nonsense"})


def test_a_config_saved_before_it_held_only_its_scheme_fields_loads_without_them():
    """hf_posattn 0.1.0 wrote the rotary and T5 defaults into every config.json: they load, dropped where the scheme
    does not read them, and the model gives the logits it gave then."""
    for scheme in ("sinusoidal", "t5", "fire", "rotary"):
        folder = SAVED_BEFORE / scheme
        written = json.loads((folder / "config.json").read_text())
        assert written["rope_theta"] == 10000.0 and written["relative_attention_num_buckets"] == 32
        config = AutoConfig.from_pretrained(folder)
        assert hasattr(config, "rope_parameters") == (scheme == "rotary")
        assert hasattr(config, "relative_attention_num_buckets") == (scheme == "t5")


def test_changing_the_scheme_after_construction_brings_its_fields():
    config = tiny_config("sinusoidal")
    config.position_embedding_type = "rotary"
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 10000.0}
    config.position_embedding_type = "t5"
    assert not hasattr(config, "rope_parameters") and config.relative_attention_num_buckets == 32
    PosAttnForCausalLM(config)
