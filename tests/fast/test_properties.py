"""Property tests (hypothesis): any valid configuration builds a model that runs and keeps the cache and padding
equivalences; any invalid one raises @strict's error, which names the field. Example counts are bounded to keep the
suite fast (a few seconds each)."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import DynamicCache

import hf_posattn
from hf_posattn import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES, PosAttnConfig

# About 10 ms per model example, under 1 ms per config example, on 2 CPU cores.
MODEL_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG_SETTINGS = settings(max_examples=200, deadline=None)


@st.composite
def valid_configs(draw) -> PosAttnConfig:
    heads = draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([2, 4, 6, 8]))  # even: rotary pairs features, sinusoidal pairs sin and cos
    scheme = draw(st.sampled_from(POSITION_EMBEDDING_TYPES))
    rotary = {"rope_theta": draw(st.floats(10.0, 1e5))} if "rope_parameters" in POSITION_SCHEMES[scheme].config_fields \
        else {}
    return PosAttnConfig(
        vocab_size=draw(st.integers(4, 64)),
        hidden_size=heads * head_dim,
        num_hidden_layers=draw(st.integers(1, 3)),
        num_attention_heads=heads,
        intermediate_size=draw(st.integers(1, 48)),
        hidden_act=draw(st.sampled_from(["gelu", "gelu_new", "relu", "silu"])),
        max_position_embeddings=draw(st.integers(12, 40)),
        position_embedding_type=scheme,
        **rotary,
        type_vocab_size=draw(st.integers(0, 3)),
        embedding_layer_norm=draw(st.booleans()),
        tie_word_embeddings=draw(st.booleans()),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )


@MODEL_SETTINGS
@given(config=valid_configs(), attn=st.sampled_from(["eager", "sdpa"]), seed=st.integers(0, 2**16),
       lengths=st.tuples(st.integers(1, 12), st.integers(1, 12)))
@torch.no_grad()
def test_valid_configs_build_run_and_keep_the_equivalences(config, attn, seed, lengths):
    torch.manual_seed(seed)
    model = hf_posattn.PosAttnForCausalLM._from_config(config, attn_implementation=attn).eval()
    generator = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, config.vocab_size, (length,), generator=generator) for length in lengths]
    longest = rows[int(lengths[1] > lengths[0])]
    full = model(longest[None]).logits
    assert full.shape == (1, len(longest), config.vocab_size) and torch.isfinite(full).all()

    # Cache: the prefix, then one token at a time, gives the logits of the full forward.
    cache = DynamicCache(config=config)
    split = max(1, len(longest) // 2)
    steps = [model(longest[None, :split], cache=cache, use_cache=True).logits]
    steps += [model(longest[None, t : t + 1], cache=cache, use_cache=True).logits for t in range(split, len(longest))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-4)

    # Padding: each row of a left-padded batch gives what it gives alone.
    width = max(lengths)
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    batch = model(ids, attention_mask=mask).logits
    for i, row in enumerate(rows):
        torch.testing.assert_close(batch[i, width - len(row) :], model(row[None]).logits[0], rtol=0, atol=1e-4)


# Field -> values it must refuse. Each example also gets valid values everywhere else.
INVALID_VALUES = {
    "vocab_size": st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.just(True), st.text(max_size=3)),
    "hidden_size": st.one_of(st.integers(max_value=0), st.just("32"), st.just(None)),
    "num_hidden_layers": st.one_of(st.integers(max_value=0), st.just(2.0)),
    "num_attention_heads": st.one_of(st.integers(max_value=0), st.just(False)),
    "intermediate_size": st.one_of(st.integers(max_value=0), st.floats(0.5, 100)),
    "max_position_embeddings": st.one_of(st.integers(max_value=0), st.just([64])),
    "position_embedding_type": st.text(max_size=12).filter(lambda text: text not in POSITION_EMBEDDING_TYPES),
    "type_vocab_size": st.one_of(st.integers(max_value=-1), st.just(1.5), st.just(True)),
    "hidden_dropout_prob": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), st.just("0.1")),
    "attention_probs_dropout_prob": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0)),
    "rope_theta": st.one_of(st.floats(max_value=0.0), st.just("1e4"), st.just(float("inf"))),
    "layer_norm_eps": st.one_of(st.floats(max_value=0.0), st.just(None), st.just(float("inf"))),
    "initializer_range": st.one_of(st.floats(max_value=0.0), st.just(float("inf")), st.just(float("nan"))),
    "embedding_layer_norm": st.one_of(st.text(max_size=5), st.integers(), st.none()),
    "scale_embeddings": st.one_of(st.text(max_size=5), st.integers(), st.none()),
    "tie_word_embeddings": st.one_of(st.text(max_size=5), st.integers(), st.floats()),
    "relative_attention_num_buckets": st.one_of(st.integers(max_value=0), st.floats()),
    "hidden_act": st.one_of(st.text(max_size=8).filter(lambda text: text not in ("gelu", "relu", "silu", "tanh")),
                            st.just(None)),
}


# The fields only one scheme reads are tried with that scheme (rope_theta goes into rope_parameters, as transformers
# puts it, and is named so).
READER = {"rope_theta": "rotary", "relative_attention_num_buckets": "t5"}
NAMED = {"rope_theta": "rope_parameters"}
ACROSS_FIELDS = ("rope_theta", "relative_attention_num_buckets")  # the scheme checks them, with the other fields


@CONFIG_SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(INVALID_VALUES)))
def test_invalid_values_raise_an_error_naming_the_field(data, field):
    value = data.draw(INVALID_VALUES[field], label=field)
    scheme = {"position_embedding_type": READER[field]} if field in READER else {}
    named = rf"(?s)validate_architecture.*{NAMED.get(field, field)}=" if field in ACROSS_FIELDS else f"field '{field}'"
    with pytest.raises(StrictDataclassError, match=named):
        PosAttnConfig(**{"hidden_size": 32, "num_attention_heads": 4, **scheme, field: value})


@CONFIG_SETTINGS
@given(heads=st.integers(1, 8), hidden=st.integers(1, 64), scheme=st.sampled_from(POSITION_EMBEDDING_TYPES))
def test_shapes_that_do_not_fit_the_heads_or_the_scheme_are_refused(heads, hidden, scheme):
    """hidden_size must split into whole heads, in pairs of features for rotary, and be even for sinusoidal."""
    head_dim, remainder = divmod(hidden, heads)
    fits = remainder == 0 and not (scheme in ("rotary", "xpos") and head_dim % 2) \
        and not (scheme == "sinusoidal" and hidden % 2)
    if fits:
        assert PosAttnConfig(hidden_size=hidden, num_attention_heads=heads, position_embedding_type=scheme).head_dim
    else:
        with pytest.raises(StrictDataclassError, match=f"hidden_size={hidden} "):
            PosAttnConfig(hidden_size=hidden, num_attention_heads=heads, position_embedding_type=scheme)
