"""PosAttnConfig validates itself: a wrong value fails at construction, naming the field, value and what is allowed."""

import pytest

from hf_posattn import PosAttnConfig, PosAttnForCausalLM

from conftest import tiny_config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(position_embedding_type="rope"), r"position_embedding_type='rope' is invalid: expected one of 'sinusoidal'"),
        (dict(hidden_size=30, num_attention_heads=4), r"hidden_size=30 is invalid: must be divisible by num_attention_heads=4"),
        (dict(position_embedding_type="rotary", hidden_size=36, num_attention_heads=4), r"hidden_size=36 .* head size .* = 9 must be even"),
        (dict(position_embedding_type="sinusoidal", hidden_size=33, num_attention_heads=3), r"hidden_size=33 .* must be even"),
        (dict(vocab_size=0), r"vocab_size=0 is invalid: expected a positive integer"),
        (dict(num_hidden_layers=-1), r"num_hidden_layers=-1 is invalid: expected a positive integer"),
        (dict(num_attention_heads=0), r"num_attention_heads=0 is invalid"),
        (dict(intermediate_size=2.5), r"intermediate_size=2.5 is invalid: expected a positive integer"),
        (dict(max_position_embeddings=0), r"max_position_embeddings=0 is invalid"),
        (dict(type_vocab_size=-1), r"type_vocab_size=-1 is invalid: expected an integer >= 0"),
        (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob=1.0 is invalid: expected a probability in \[0, 1\)"),
        (dict(attention_probs_dropout_prob=-0.1), r"attention_probs_dropout_prob=-0.1 is invalid"),
        (dict(rope_theta=0), r"rope_theta=0 is invalid: expected a positive number"),
        (dict(layer_norm_eps=-1e-5), r"layer_norm_eps=-1e-05 is invalid"),
        (dict(initializer_range=0), r"initializer_range=0 is invalid"),
        (dict(hidden_act="swishy"), r"hidden_act='swishy' is invalid: expected the name of an activation"),
    ],
)
def test_invalid_values_raise_at_construction(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_valid_configs_round_trip(tmp_path):
    config = tiny_config("alibi", type_vocab_size=0, embedding_layer_norm=False)
    config.save_pretrained(tmp_path)
    loaded = PosAttnConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.head_dim == 8


def test_a_config_edited_after_construction_is_checked_when_the_model_is_built():
    config = tiny_config()
    config.position_embedding_type = "rotray"
    with pytest.raises(ValueError, match="position_embedding_type='rotray'"):
        PosAttnForCausalLM(config)
