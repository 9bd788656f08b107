"""The model itself: Auto classes, caches, padding, attention backends, outputs, segments and positions."""

import math

import pytest
import torch
from conftest import (
    BIAS_SCHEMES,
    BOUNDED_SCHEMES,
    SCHEMES,
    VOCAB,
    check_cache_steps_equal_full_forward,
    check_left_padding_matches_rows_alone,
    pad_left,
    random_ids,
    tiny_config,
    tiny_lm,
)
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

import hf_posattn
from hf_posattn.model.modeling_posattn import Sizes
from hf_posattn.model.positional import alibi_slopes, sinusoidal_table

pytestmark = pytest.mark.usefixtures("no_grad")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_auto_classes_build_package_classes(scheme):
    config = AutoConfig.for_model("posattn", position_embedding_type=scheme, **_small())
    assert type(config) is hf_posattn.PosAttnConfig
    assert type(AutoModel.from_config(config)) is hf_posattn.PosAttnModel
    assert type(AutoModelForCausalLM.from_config(config)) is hf_posattn.PosAttnForCausalLM
    classifier = AutoModelForSequenceClassification.from_config(config)
    assert type(classifier) is hf_posattn.PosAttnForSequenceClassification
    ids = random_ids(2, 7)
    assert classifier(ids).logits.shape == (2, config.num_labels)


def _small():
    return dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)


# flex_attention compiles its kernels: its cases are in the end-to-end tier (tests/e2e/test_attention_backends.py).
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_cache_steps_equal_full_forward(scheme, attn):
    check_cache_steps_equal_full_forward(scheme, attn)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_left_padding_matches_rows_alone(scheme, attn):
    check_left_padding_matches_rows_alone(scheme, attn)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_packed_documents_match_documents_alone(scheme, attn):
    """Documents packed into one row, their position ids restarting at each (no mask, no cache): each gives what it
    gives alone. The mask builder keeps them apart; the schemes read positions, including the score biases, which
    take distances from position ids."""
    model = tiny_lm(scheme, attn)
    documents = [random_ids(1, n, seed=n)[0] for n in (5, 9, 4)]
    packed = torch.cat(documents)[None]
    positions = torch.cat([torch.arange(len(document)) for document in documents])[None]
    logits = model(packed, position_ids=positions, use_cache=False).logits[0]
    start = 0
    for document in documents:
        alone = model(document[None]).logits[0]
        torch.testing.assert_close(logits[start : start + len(document)], alone, rtol=0, atol=1e-5)
        start += len(document)


@pytest.mark.parametrize("scheme", BIAS_SCHEMES)
def test_score_biases_read_distances_from_position_ids(scheme):
    """A query and a key three positions apart are biased as three apart, however many tokens lie between them:
    randomized positions (Ruoss et al. 2023) reach the score-bias schemes. A bias of the distance alone is the same
    for positions shifted as a whole; FIRE also reads the query's own position."""
    model = tiny_lm(scheme)
    positions = model.model.positions
    sizes = Sizes(batch=1, query_length=10, past_length=0, key_length=10)

    def bias(position_ids):
        return model.model.score_bias(position_ids, None, sizes, torch.float32)[0][:, torch.ones(10, 10).tril().bool()]

    plain = bias(torch.arange(10)[None])
    assert not torch.allclose(bias(torch.arange(10)[None] * 3), plain, rtol=0, atol=0)
    if positions.bias_from_distance_alone:
        torch.testing.assert_close(bias(torch.arange(10)[None] + 7), plain, rtol=0, atol=0)
    query_positions = torch.tensor([[0, 2, 3, 7, 11]])
    sizes = Sizes(batch=1, query_length=5, past_length=0, key_length=5)
    distance = query_positions[:, :, None] - query_positions[:, None, :]
    torch.testing.assert_close(model.model.score_bias(query_positions, None, sizes, torch.float32),
                               positions.attention_bias(distance, query_positions))
    assert distance[0, 4, 3] == 4 and distance[0, 4, 0] == 11


def test_backend_switch_after_loading_takes_effect():
    model = tiny_lm("alibi", "sdpa")
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    out = model(random_ids(1, 6), output_attentions=True)
    assert out.attentions is not None and len(out.attentions) == 2


@pytest.mark.parametrize("scheme", BIAS_SCHEMES)
def test_flash_attention_refuses_a_bias_with_a_clear_error(scheme):
    model = tiny_lm(scheme, "eager")
    with pytest.raises(ValueError, match="adds a bias to the attention scores"):
        model.set_attn_implementation("flash_attention_2")


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s not in BIAS_SCHEMES])
def test_flash_attention_is_refused_only_for_a_bias(scheme):
    """Schemes without a score bias reach transformers' own checks (flash-attn installed, a GPU)."""
    model = tiny_lm(scheme, "eager")
    try:
        model.set_attn_implementation("flash_attention_2")
    except ImportError as error:  # flash-attn not installed here
        assert "FlashAttention2" in str(error)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_output_attentions_and_hidden_states(scheme):
    model = tiny_lm(scheme, "eager")
    ids = random_ids(2, 8)
    out = model(ids, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == model.config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (2, model.config.num_attention_heads, 8, 8)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 8))
        assert torch.all(weights.triu(diagonal=1) == 0), "a token attends to a later one"
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (2, 8, model.config.hidden_size) for h in out.hidden_states)


def test_sinusoidal_table_is_the_closed_form():
    model = tiny_lm("sinusoidal")
    amplitude = model.config.initializer_range  # fixed: the waves are not learned
    table = model.model.positions.table / amplitude
    d = model.config.hidden_size
    for pos in (0, 1, 7, 63):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # Past the table, the same formula.
    far = torch.tensor([[200, 1000]])
    torch.testing.assert_close(model.model.positions.embed(far), sinusoidal_table(far, d) * amplitude)
    assert not [name for name, _ in model.model.positions.named_parameters()]
    assert sinusoidal_table(torch.tensor([1000]), d)[0, 0].item() == pytest.approx(math.sin(1000), abs=1e-6)


def test_alibi_slopes_follow_press_et_al():
    assert alibi_slopes(8).tolist() == [2 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(4).tolist() == [2 ** (-2 * (i + 1)) for i in range(4)]
    six = alibi_slopes(6).tolist()  # 4 from 2^(-8/4), then the odd-indexed ones of 8 heads
    assert six == [2 ** (-2 * (i + 1)) for i in range(4)] + [2**-1, 2**-3]
    model = tiny_lm("alibi", "eager")
    distance = torch.arange(3)[:, None] - torch.arange(3)[None, :]
    bias = model.model.positions.attention_bias(distance[None], torch.arange(3)[None])
    assert bias.shape == (1, 4, 3, 3)
    assert bias[0, 0, 2, 0].item() == pytest.approx(-2 * alibi_slopes(4)[0].item())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_segments_change_the_output_and_are_checked(scheme):
    model = tiny_lm(scheme)
    ids = random_ids(1, 8)
    segment_a = torch.zeros_like(ids)
    segment_b = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)], dim=1)
    out_a = model(ids, token_type_ids=segment_a).logits
    out_b = model(ids, token_type_ids=segment_b).logits
    torch.testing.assert_close(out_a[:, :4], out_b[:, :4])  # causal: earlier tokens do not see the later segment
    assert (out_a[:, 4:] - out_b[:, 4:]).abs().max() > 1e-3
    torch.testing.assert_close(model(ids).logits, out_a)  # no token_type_ids means segment 0
    with pytest.raises(ValueError, match=r"token_type_ids contains 2, outside the allowed range \[0, 2\)"):
        model(ids, token_type_ids=segment_b * 2)


def test_generate_honours_token_type_ids():
    model = tiny_lm("rotary")
    ids = random_ids(1, 6)
    kwargs = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_scores=True)
    plain = model.generate(ids, **kwargs)
    with_segments = model.generate(ids, token_type_ids=torch.ones_like(ids), **kwargs)
    for step in range(8):
        assert (plain.scores[step] - with_segments.scores[step]).abs().max() > 1e-4
    segments = with_segments.sequences
    # Same as stepping by hand with segment 1 continued for the new tokens.
    manual = ids
    for _ in range(8):
        logits = model(manual, token_type_ids=torch.ones_like(manual)).logits
        manual = torch.cat([manual, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert segments.tolist() == manual.tolist()


def test_no_segment_embeddings_when_type_vocab_size_is_zero():
    model = tiny_lm("rotary", type_vocab_size=0)
    assert model.model.embeddings.token_type_embeddings is None
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(random_ids(1, 4), token_type_ids=torch.zeros(1, 4, dtype=torch.long))


def test_learned_positions_refuse_past_the_maximum():
    model = tiny_lm("learned", max_position_embeddings=16)
    model(random_ids(1, 16))
    with pytest.raises(ValueError, match="position 16 is past max_position_embeddings=16"):
        model(random_ids(1, 17))
    cache = model(random_ids(1, 16), use_cache=True).cache
    with pytest.raises(ValueError, match="past max_position_embeddings"):
        model(random_ids(1, 1), cache=cache, use_cache=True)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s not in BOUNDED_SCHEMES])
def test_other_schemes_run_past_the_maximum(scheme):
    model = tiny_lm(scheme, max_position_embeddings=16)
    logits = model(random_ids(1, 40)).logits
    assert logits.shape == (1, 40, VOCAB) and torch.isfinite(logits).all()
    generated = model.generate(random_ids(1, 14), max_new_tokens=10, do_sample=False)
    assert generated.shape == (1, 24)


def test_out_of_vocabulary_ids_raise_a_value_error():
    model = tiny_lm()
    with pytest.raises(ValueError, match=rf"input_ids contains {VOCAB}, outside the allowed range \[0, {VOCAB}\)"):
        model(torch.tensor([[3, VOCAB]]))
    with pytest.raises(ValueError, match="seq >= 1"):
        model(torch.zeros(1, 0, dtype=torch.long))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generation_modes(scheme):
    model = tiny_lm(scheme)
    ids = random_ids(2, 5)
    greedy = model.generate(ids, max_new_tokens=6, do_sample=False)
    static = model.generate(ids, max_new_tokens=6, do_sample=False, cache_implementation="static")
    assert greedy.tolist() == static.tolist()
    torch.manual_seed(0)
    sampled = model.generate(ids, max_new_tokens=6, do_sample=True, top_p=0.9, temperature=0.8)
    beams = model.generate(ids, max_new_tokens=6, num_beams=3, do_sample=False)
    assert sampled.shape == beams.shape == (2, 11)
    # Beam search keeps the best-scoring sequence: at least as likely as greedy's.
    def logprob(seq):
        logits = model(seq).logits.log_softmax(-1)
        return logits[:, 4:-1].gather(-1, seq[:, 5:, None]).sum().item()
    assert logprob(beams) >= logprob(greedy) - 1e-4


def test_sequence_classification_reads_the_last_real_token():
    torch.manual_seed(0)
    model = hf_posattn.PosAttnForSequenceClassification(tiny_config("rotary", num_labels=3)).eval()
    rows = [random_ids(1, n, seed=n)[0] for n in (4, 7)]
    ids, mask = pad_left(rows)
    batch = model(ids, attention_mask=mask).logits
    for i, row in enumerate(rows):
        torch.testing.assert_close(batch[i], model(row[None]).logits[0], rtol=0, atol=1e-5)
    # Right padding as well.
    right = torch.zeros_like(ids)
    right[0, :4], right[1] = rows[0], rows[1]
    right_mask = (torch.arange(7) < torch.tensor([[4], [7]])).long()
    torch.testing.assert_close(model(right, attention_mask=right_mask).logits, batch, rtol=0, atol=1e-5)
    with torch.enable_grad():
        model.train()
        loss = model(ids, attention_mask=mask, labels=torch.tensor([0, 2])).loss
    assert loss.ndim == 0 and loss > 0
