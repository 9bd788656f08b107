"""Each position scheme's own formula and what every scheme tells the tools: T5 buckets, KERPLE, FIRE, xPos, rotary
variants from `rope_parameters`, RoFormer's frequencies, scaled embeddings; `register_scheme`'s refusals; tables that
exist without `_init_weights`; the tied embedding sharded with the lm_head. Training a scheme registered at run time
is in tests/e2e/test_schemes.py."""

import math

import pytest
import torch
from conftest import SCHEMES, HalfDistanceBias, random_ids, tiny_config, tiny_lm
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.initialization import no_init_weights
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.t5.modeling_t5 import T5Attention

import hf_posattn
from hf_posattn import PosAttnConfig
from hf_posattn.model.positional import (
    EMBEDDING,
    POSITION_SCHEMES,
    ROTATION,
    SCORE_BIAS,
    Panel,
    PositionScheme,
    apply_rotation,
    register_scheme,
)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_says_what_the_tools_ask(scheme):
    cls = POSITION_SCHEMES[scheme]
    assert cls.name == scheme
    assert cls.description and "\n" not in cls.description
    assert cls.citation
    config = tiny_config(scheme)
    assert cls.max_length(config) == (config.max_position_embeddings if scheme == "learned" else None)
    assert cls.config_problem(config) is None
    expected = {"sinusoidal": {EMBEDDING}, "learned": {EMBEDDING}, "rotary": {ROTATION}, "xpos": {ROTATION},
                "none": set(), "alibi": {SCORE_BIAS}, "t5": {SCORE_BIAS}, "kerple": {SCORE_BIAS}, "fire": {SCORE_BIAS}}
    if scheme in expected:
        assert cls.contributes() == expected[scheme]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("max_positions", [8, 64])
@torch.no_grad()
def test_every_scheme_draws_a_panel_of_data(scheme, max_positions):
    positions = tiny_lm(scheme, max_position_embeddings=max_positions).model.positions
    panel = positions.panel(length=40)
    if not positions.contributes():
        assert panel is None
        return
    assert isinstance(panel, Panel) and panel.kind in ("heatmap", "lines")
    assert panel.data.ndim == 2 and torch.isfinite(panel.data).all() and panel.data.std() > 0
    assert panel.title and panel.xlabel and panel.ylabel
    if panel.kind == "lines":
        assert len(panel.series) == panel.data.shape[0] == 4  # one curve per head
        assert panel.data.shape[1] == 40
    else:
        assert panel.data.shape[0] == min(40, max_positions if scheme == "learned" else 40)


def test_register_scheme_refuses_what_it_cannot_register(half_distance_registered):
    with pytest.raises(ValueError, match="takes a subclass of PositionScheme"):
        register_scheme(nn.Linear)

    class Nameless(PositionScheme):
        pass

    with pytest.raises(ValueError, match=r"Nameless.name='' is invalid"):
        register_scheme(Nameless)

    class Impostor(PositionScheme):
        name = "half_distance"

    with pytest.raises(ValueError, match="'half_distance' is already registered by HalfDistanceBias"):
        register_scheme(Impostor)
    assert register_scheme(HalfDistanceBias) is HalfDistanceBias  # the same class again is fine
    assert "Nameless" not in POSITION_SCHEMES and POSITION_SCHEMES["half_distance"] is HalfDistanceBias


def test_an_unregistered_name_is_refused_naming_the_registered_ones():
    with pytest.raises(StrictDataclassError, match=r"(?s)position_embedding_type.*Value must be one of "
                                                   r"'sinusoidal', .*'fire', .*got 'half_distance'"):
        tiny_config("half_distance")


@pytest.mark.parametrize("scheme", SCHEMES)
@torch.no_grad()
def test_tables_exist_without_init_weights(scheme):
    """Built under no_init_weights (as DeepSpeed loading does) and given a state dict, which holds no tables (they
    are not saved): the model computes what a normally built one does."""
    model = tiny_lm(scheme)
    with no_init_weights():
        bare = hf_posattn.PosAttnForCausalLM(tiny_config(scheme))
    bare.load_state_dict(model.state_dict())
    ids = random_ids(2, 9)
    torch.testing.assert_close(bare.eval()(ids).logits, model(ids).logits, rtol=0, atol=1e-6)


def test_the_tied_embedding_is_sharded_with_the_lm_head():
    plan = hf_posattn.PosAttnForCausalLM(tiny_config())._tp_plan
    assert plan["model.embeddings.word_embeddings"] == "embedding_rowwise"
    assert plan["lm_head"].startswith("colwise")
    modules = dict(tiny_lm().named_modules())
    for pattern in plan:
        assert pattern.replace("*", "0") in modules, pattern


@torch.no_grad()
def test_t5_bias_is_one_learned_scalar_per_head_and_bucket():
    model = tiny_lm("t5", relative_attention_num_buckets=8, relative_attention_max_distance=20)
    positions = model.model.positions
    assert [name for name, _ in model.named_parameters() if "positions" in name] == ["model.positions.bias"]
    distance = torch.arange(30)[:, None] - torch.arange(30)[None, :]
    buckets = T5Attention._relative_position_bucket(-distance, bidirectional=False, num_buckets=8, max_distance=20)
    assert buckets.max() == 7 and buckets[5, 0] == 4 and buckets[29, 0] == 7  # exact below 4, log-spaced, capped
    bias = positions.attention_bias(distance[None], torch.arange(30)[None])
    assert bias.shape == (1, 4, 30, 30)
    torch.testing.assert_close(bias[0], positions.bias[buckets].permute(2, 0, 1))


@torch.no_grad()
def test_kerple_is_a_positive_logarithmic_penalty():
    positions = tiny_lm("kerple").model.positions
    positions.raw_r1.copy_(torch.tensor([-3.0, 0.0, 1.0, 2.0]))  # raw values may be negative: r = softplus(raw)
    positions.raw_r2.copy_(torch.tensor([0.5, -2.0, 0.0, 3.0]))
    r1, r2 = (torch.log1p(raw.exp()) for raw in (positions.raw_r1, positions.raw_r2))
    distance = torch.arange(6)[:, None] - torch.arange(6)[None, :]
    bias = positions.attention_bias(distance[None], torch.arange(6)[None])[0]
    for head in range(4):
        for m, n in ((5, 0), (3, 2), (4, 4)):
            expected = -r1[head] * math.log(1 + r2[head] * abs(m - n))
            assert bias[head, m, n].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
    assert (bias[:, 5, :5] < 0).all() and (bias[:, 5, :5].diff(dim=-1) > 0).all()  # farther back: lower


@torch.no_grad()
def test_fire_normalises_the_distance_by_the_query_position():
    positions = tiny_lm("fire", max_position_embeddings=8).model.positions
    c, threshold = (torch.nn.functional.softplus(raw) for raw in (positions.raw_c, positions.raw_threshold))
    assert c.item() == pytest.approx(1.0) and threshold.item() == pytest.approx(4.0)
    distance = torch.arange(12)[:, None] - torch.arange(12)[None, :]
    query_positions = torch.arange(12)[None] + torch.tensor([[0], [5]])  # the second row: 5 positions further on
    bias = positions.attention_bias(distance[None], query_positions)
    assert bias.shape == (2, 4, 12, 12)
    for row, m, n in ((0, 2, 0), (0, 11, 3), (1, 11, 3)):
        position = query_positions[row, m].item()
        x = math.log1p(c * (m - n)) / math.log1p(c * max(threshold.item(), position))
        expected = positions.mlp_out(torch.relu(positions.mlp_in(torch.tensor([x]))))
        torch.testing.assert_close(bias[row, :, m, n], expected, rtol=1e-5, atol=1e-6)
    # Below the threshold (4) only the distance matters; beyond it, the query position too.
    torch.testing.assert_close(bias[0, :, 3, 1], bias[0, :, 2, 0])
    assert (bias[0, :, 11, 9] - bias[0, :, 3, 1]).abs().max() > 1e-6
    assert (bias[0, :, 11, 3] - bias[1, :, 11, 3]).abs().max() > 1e-6


@torch.no_grad()
def test_xpos_scales_the_rotary_score_by_a_decay_of_the_distance():
    model = tiny_lm("xpos")
    positions = model.model.positions
    head_dim, gamma = positions.config.head_dim, positions.scale_base
    zeta = (torch.arange(0, head_dim, 2) / head_dim + 0.4) / 1.4
    rotary = tiny_lm("rotary").model.positions

    def score(scheme, m, n, pair):
        unit = torch.zeros(1, 1, 1, head_dim)
        unit[..., pair] = unit[..., pair + head_dim // 2] = 1.0
        q, _ = apply_rotation(unit, unit, scheme.rotation(torch.tensor([[m]])))
        _, k = apply_rotation(unit, unit, scheme.rotation(torch.tensor([[n]])))
        return (q * k).sum().item()

    for m, n in ((7, 2), (300, 10), (40, 40)):
        for pair in (0, head_dim // 2 - 1):
            expected = score(rotary, m, n, pair) * zeta[pair].item() ** ((m - n) / gamma)
            assert score(positions, m, n, pair) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # Relative: shifting both positions leaves the score as it is.
    assert score(positions, 300, 10, 0) == pytest.approx(score(positions, 1290, 1000, 0), rel=1e-3)


ROPE_VARIANTS = {
    "linear": {"factor": 2.0},
    "dynamic": {"factor": 2.0},
    "yarn": {"factor": 2.0},
    "llama3": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "longrope": {"short_factor": [1.0] * 4, "long_factor": [2.0] * 4, "original_max_position_embeddings": 16},
}


@pytest.mark.parametrize("rope_type", ROPE_VARIANTS)
@torch.no_grad()
def test_rotary_variants_from_rope_parameters(rope_type, tmp_path):
    rope_parameters = {"rope_type": rope_type, "rope_theta": 1000.0, **ROPE_VARIANTS[rope_type]}
    model = tiny_lm("rotary", rope_parameters=dict(rope_parameters))
    positions = model.model.positions
    expected, scaling = ROPE_INIT_FUNCTIONS[rope_type](model.config, None)
    torch.testing.assert_close(positions.inv_freq, expected)
    assert positions.attention_scaling == pytest.approx(scaling)
    default = tiny_lm("rotary", rope_theta=1000.0).model.positions
    assert not torch.equal(positions.inv_freq, default.inv_freq)

    ids = random_ids(2, 12)
    full = model(ids).logits
    assert torch.isfinite(full).all()
    cache = DynamicCache(config=model.config)
    steps = [model(ids[:, :6], cache=cache, use_cache=True).logits]
    steps += [model(ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(6, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)

    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.rope_parameters["rope_type"] == rope_type
    torch.testing.assert_close(loaded(ids).logits, full, rtol=0, atol=1e-6)


@torch.no_grad()
def test_default_rotary_frequencies_are_roformers():
    positions = tiny_lm("rotary", rope_theta=500.0).model.positions
    expected = [500.0 ** (-2 * j / 8) for j in range(4)]
    assert positions.inv_freq.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "alibi"])
@torch.no_grad()
def test_scale_embeddings_follows_vaswani_et_al(scheme):
    plain, scaled = tiny_lm(scheme), tiny_lm(scheme, scale_embeddings=True)
    ids = random_ids(1, 5)
    tokens = plain.model.embeddings.word_embeddings(ids)
    assert plain.model.embeddings.scale == 1.0 and scaled.model.embeddings.scale == math.sqrt(32)
    if scheme == "sinusoidal":
        assert scaled.model.positions.amplitude == 1.0 and plain.model.positions.amplitude == 0.02
        assert scaled.model.positions.table.abs().max() == pytest.approx(1.0, abs=1e-3)
    # Without a LayerNorm the embedding output is the sum itself.
    plain, scaled = tiny_lm(scheme, embedding_layer_norm=False), tiny_lm(scheme, embedding_layer_norm=False,
                                                                        scale_embeddings=True)
    position_ids = torch.arange(5)[None]
    for model, factor in ((plain, 1.0), (scaled, math.sqrt(32))):
        embeddings = model.model.embeddings
        expected = tokens * factor + embeddings.token_type_embeddings.weight[0]
        position = model.model.positions.embed(position_ids)
        expected = expected + (position if position is not None else 0)
        out = embeddings(input_ids=ids, position_embeds=position)
        torch.testing.assert_close(out, expected)
    assert PosAttnConfig().scale_embeddings is False  # saved models load as before


@pytest.mark.parametrize("scheme", ["rotary", "xpos"])
@torch.no_grad()
def test_rotary_tables_come_from_a_module_shaped_like_transformers_own(scheme):
    """`rotary_emb` is built from a config and called as (x, position_ids) -> (cos, sin), as LlamaRotaryEmbedding is:
    transformers' rope tests find it by that name and rebuild it with other rope_parameters. Linear scaling by 10
    puts position p where position p / 10 was."""
    config = tiny_config(scheme)
    rope_class = type(tiny_lm(scheme).model.positions.rotary_emb)
    x = torch.randn(1)
    positions = torch.arange(100)[None]
    cos, sin = rope_class(config=config)(x, positions)
    assert cos.shape == sin.shape == (1, 100, config.head_dim) and cos.dtype == torch.float32
    config.rope_parameters = {"rope_type": "linear", "factor": 10.0, "rope_theta": 10000.0}
    linear_cos, _ = rope_class(config=config)(x, positions)
    torch.testing.assert_close(linear_cos[:, ::10], cos[:, :10])
