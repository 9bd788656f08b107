"""The study's numbers, on made-up runs and tiny untrained models: the mean and Student-t interval over seeds in the
study's summary, skipped lengths and extension rows in it, the loss at each position of a window (and the unigram
baseline's), the position signal in the embeddings, and an extended model's weights and frequencies. Studies that
train are in tests/e2e/test_study.py."""

import math

import numpy as np
import pytest
import torch

from hf_posattn import PosAttnConfig, PosAttnForCausalLM
from hf_posattn.data.corpus import load_shakespeare
from hf_posattn.study.lm import LanguageModelStudy, embedding_signal, unigram_position_loss
from hf_posattn.study.options import EXTENSIONS
from hf_posattn.study.plan import extended_model
from hf_posattn.study.perplexity import perplexity_of_ids
from hf_posattn.study.summary import summarize
from hf_posattn.study.kind import markdown_table

# t(0.975, n - 1) from standard tables (NIST/SEMATECH e-Handbook), for n seeds.
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571}


def run_record(position, seed, perplexities, position_loss=None, extensions=None):
    """A run as the study records it, with made-up numbers; lengths 64 and 128."""
    results = [{"length": 64, "perplexity": perplexities[0]}, {"length": 128, "perplexity": perplexities[1]}]
    if position_loss is not None:
        results[1]["position_loss"] = position_loss
    record = {"position": position, "seed": seed, "parameters": 1000, "train_seconds": 60.0, "results": results,
              "embedding_signal": None}
    if extensions is not None:
        record["extensions"] = extensions
    return record


@pytest.mark.parametrize("seeds", sorted(T_975))
def test_summary_gives_the_mean_and_student_t_interval_over_seeds(seeds):
    # Perplexities 10, 12, 14, ... at L (sample std 2 * sqrt(n (n + 1) / 12) / ...): computed, not assumed.
    at_l = [10.0 + 2 * k for k in range(seeds)]
    at_2l = [3 * value for value in at_l]  # every seed grows 3x: the growth's interval has zero width
    records = [run_record("alibi", seed, (a, b)) for seed, (a, b) in enumerate(zip(at_l, at_2l))]
    [row] = summarize(records, ["alibi"], [64, 128], LanguageModelStudy())
    mean = sum(at_l) / seeds
    std = math.sqrt(sum((value - mean) ** 2 for value in at_l) / (seeds - 1))
    half = T_975[seeds] * std / math.sqrt(seeds)
    assert row["seeds"] == seeds and row["perplexity"][64] == pytest.approx(mean)
    assert row["std"][64] == pytest.approx(std)
    assert (row["low"][64], row["high"][64]) == pytest.approx((mean - half, mean + half), abs=2e-3 * std)
    assert (row["low"][128], row["high"][128]) == pytest.approx((3 * (mean - half), 3 * (mean + half)), abs=7e-3 * std)
    assert (row["growth"][128], row["growth_low"][128], row["growth_high"][128]) == pytest.approx((3, 3, 3))
    assert row["growth"][64] == 1.0


def test_one_seed_has_no_interval_and_the_table_says_how_intervals_are_made():
    [row] = summarize([run_record("none", 0, (20.0, 30.0))], ["none"], [64, 128], LanguageModelStudy())
    assert row["perplexity"] == {64: 20.0, 128: 30.0} and row["low"] == {64: None, 128: None}
    assert row["growth"][128] == pytest.approx(1.5)

    records = [run_record("none", seed, (v, v)) for seed, v in enumerate((1.0, 2.0, 3.0))]
    study = {"settings": {"task": "lm", "lengths": [64, 128], "seq_len": 64, "seeds": [0, 1, 2]},
             "table": summarize(records, ["none"], [64, 128], LanguageModelStudy()),
             "unigram_baseline": {"perplexity": 500.0}}
    table = markdown_table(study)
    # mean 2, std 1, n = 3: half width 4.303 / sqrt(3) = 2.48
    assert "| none | 0.00M | 2.00 ± 2.48 | 2.00 ± 2.48 | 1.00 ± 0.00 |" in table
    assert "95 % interval of the mean (Student's t with 2 degrees of freedom)" in table


def test_skipped_lengths_per_position_losses_and_extension_rows_are_summarized():
    curves = ([1.0, 2.0, None], [3.0, 4.0, None])
    extension = [{"length": 64, "perplexity": 5.0}, {"length": 128, "perplexity": 6.0}]
    records = [run_record("rotary", seed, (10.0, 20.0), curve, {name: extension for name in EXTENSIONS})
               for seed, curve in enumerate(curves)]
    learned = run_record("learned", 0, (10.0, 0.0))
    learned["results"][1] = {"length": 128, "skipped": "no vector"}
    rows = summarize(records + [learned], ["rotary", "learned"], [64, 128], LanguageModelStudy())
    assert [(row["position"], row["extension"]) for row in rows] == [
        ("rotary", None), *(("rotary", name) for name in EXTENSIONS), ("learned", None)]
    assert rows[0]["position_loss"] == {"length": 128, "loss": [2.0, 3.0, None]}
    assert rows[1]["label"] == "rotary + linear interpolation (x2)" and rows[1]["perplexity"] == {64: 5.0, 128: 6.0}
    assert rows[-1]["skipped"] == {128: "no vector"} and 128 not in rows[-1]["perplexity"]


def tiny_model(position="sinusoidal", vocab_size=50, max_position_embeddings=64, **config):
    torch.manual_seed(0)
    config = PosAttnConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=max_position_embeddings,
                           position_embedding_type=position,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **config)
    return PosAttnForCausalLM(config).eval()


@pytest.mark.parametrize("position", ["sinusoidal", "learned", "rotary", "alibi", "none", "t5", "xpos"])
@pytest.mark.parametrize("stride", [None, 8])
def test_a_model_that_predicts_uniformly_has_loss_log_v_at_every_position(position, stride):
    model = tiny_model(position)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: every token gets 1 / V
    ids = torch.randint(0, 50, (200,), generator=torch.Generator().manual_seed(1)).tolist()
    result = perplexity_of_ids(model, ids, 24, stride=stride, per_position=True)
    assert len(result["position_loss"]) == 23
    assert result["position_loss"] == pytest.approx([math.log(50)] * 23, rel=1e-6)
    assert result["perplexity"] == pytest.approx(50, rel=1e-5)


@pytest.mark.parametrize("position", ["sinusoidal", "rotary", "alibi"])
def test_per_position_losses_add_up_to_the_models_own_loss(position):
    model = tiny_model(position)
    ids = torch.randint(0, 50, (240,), generator=torch.Generator().manual_seed(2)).tolist()
    result = perplexity_of_ids(model, ids, 24, per_position=True, batch_size=3)
    windows = torch.tensor(ids).view(10, 24)
    with torch.no_grad():
        expected = model(input_ids=windows, labels=windows).loss.item()  # transformers' causal-LM loss
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert sum(result["position_loss"]) / 23 == pytest.approx(expected, rel=1e-5)  # every position scored 10 times
    assert len(set(round(loss, 4) for loss in result["position_loss"])) > 1  # a real model differs by position


@pytest.mark.parametrize("scale_embeddings", [False, True])
def test_embedding_signal_measures_the_sinusoidal_waves_against_the_tokens(scale_embeddings):
    model = tiny_model(scale_embeddings=scale_embeddings, vocab_size=500)
    ids = list(range(500)) * 2
    signal = embedding_signal(model, ids, 64)
    # sin² + cos² = 1 per pair of features: the waves' mean square is amplitude² / 2, whatever the positions.
    amplitude = 1.0 if scale_embeddings else 0.02
    assert signal["position_rms"] == pytest.approx(amplitude / math.sqrt(2), rel=1e-5)
    # Token embeddings start at std initializer_range, times sqrt(d) when scaled.
    assert signal["token_rms"] == pytest.approx(0.02 * (math.sqrt(32) if scale_embeddings else 1), rel=0.05)
    assert signal["ratio"] == pytest.approx(signal["position_rms"] / signal["token_rms"])


def test_the_unigram_loss_at_each_position_is_averaged_over_the_windows_the_models_score():
    losses = np.arange(12, dtype=float)  # the loss of 12 tokens in a row
    curves = unigram_position_loss(losses, [4, 6, 8])
    # Windows of 4: tokens 0-3, 4-7, 8-11; position p of each predicts its token p (the first is never predicted).
    assert curves["4"] == [(1 + 5 + 9) / 3, (2 + 6 + 10) / 3, (3 + 7 + 11) / 3]
    assert curves["6"] == [(1 + 7) / 2, (2 + 8) / 2, (3 + 9) / 2, (4 + 10) / 2, (5 + 11) / 2]
    assert curves["8"] == [1, 2, 3, 4, 5, 6, 7]  # one window; the tail shorter than a window is left out, as there


@pytest.mark.parametrize("position", ["rotary", "xpos"])
@pytest.mark.parametrize("rope_type", list(EXTENSIONS))
def test_an_extended_model_has_the_same_weights_and_stretched_frequencies(tmp_path, position, rope_type):
    from hf_posattn.data.tokenizers import train_tokenizer
    from hf_posattn.sharing.loading import load_model

    model = tiny_model(position, vocab_size=300, max_position_embeddings=32)  # "trained" at 32 (no run file)
    model.save_pretrained(tmp_path)
    train_tokenizer(load_shakespeare()["train"][0]["text"][:20_000], 300).save_pretrained(tmp_path)
    model, _ = load_model(str(tmp_path))
    extended = extended_model(str(tmp_path), rope_type, 4)
    assert extended.config.rope_parameters["factor"] == 4.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), extended.state_dict().values()))
    original = model.base_model.positions.inv_freq
    stretched = extended.base_model.positions
    stretched.rotation(torch.arange(128)[None])  # dynamic NTK stretches when it sees an input past 32
    if rope_type == "linear":
        assert torch.allclose(stretched.inv_freq, original / 4)
    else:  # the slowest waves are stretched, the fastest kept
        assert stretched.inv_freq[-1] < original[-1] and stretched.inv_freq[0] == pytest.approx(original[0])
