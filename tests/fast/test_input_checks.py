"""Bad input to the model and to its saved folder gets a clear error and loses nothing, in process: inputs, masks,
ids, caches and labels of the wrong shape, range or dtype; generating past the learned maximum; truncated or corrupted
weights, config files with an unknown scheme or missing fields (every architecture field is saved), field
validators' refusals; and pickled weights nobody asked to unpickle."""

import json
import shutil

import pytest
import torch
from conftest import IDS, SCHEMES, VOCAB, damaged, edit_config, posattn, random_ids, tiny_config, tiny_lm, truncate
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from hf_posattn import PosAttnForSequenceClassification
from hf_posattn.model.configuration_posattn import ARCHITECTURE_FIELDS
from hf_posattn.model.positional import sinusoidal_table

pytestmark = pytest.mark.usefixtures("no_grad")


ONES = torch.ones(2, 6, dtype=torch.long)


@pytest.mark.parametrize(
    "inputs, message",
    [
        (dict(attention_mask=ONES[:, :5]), r"attention_mask has shape \(2, 5\), expected \(2, 6\)"),
        (dict(attention_mask=torch.ones(2, 7, dtype=torch.long)),
         r"attention_mask has shape \(2, 7\), expected \(2, 6\)"),
        (dict(attention_mask=ONES[:1]), r"attention_mask has shape \(1, 6\), expected \(2, 6\)"),
        (dict(attention_mask=ONES[0]), r"attention_mask has shape \(6,\), expected \(2, 6\)"),
        (dict(attention_mask=torch.ones(2, 1, 6, 5, dtype=torch.bool)), r"shape \(2, 1, 6, 5\).* a 4-D mask of shape "
                                                                        r"\(2, 1, 6, 6\)"),
        (dict(token_type_ids=ONES[:, :5]), r"token_type_ids has shape \(2, 5\), expected \(2, 6\)"),
        (dict(position_ids=torch.arange(5)[None]), r"position_ids has shape \(1, 5\), expected \(2, 6\)"),
        (dict(input_ids=IDS[:0]), r"with batch >= 1 and seq >= 1, got \(0, 6\)"),
        (dict(input_ids=None, inputs_embeds=torch.zeros(2, 6, 31)), r"inputs_embeds has 31 features per token, "
                                                                     r"expected hidden_size=32"),
    ],
    ids=["mask-short", "mask-long", "mask-rows", "mask-1d", "mask-4d", "segments", "positions", "no-rows", "embeds"],
)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_inputs_of_the_wrong_shape_raise_a_value_error(inputs, message, attn):
    """Each of these failed deep inside (a broadcasting RuntimeError, an IndexError) or, worse, ran: a mask one
    column too long gave shifted positions, and ALiBi with sdpa broadcast a mask of the wrong size."""
    for scheme in ("rotary", "alibi"):
        with pytest.raises(ValueError, match=message):
            tiny_lm(scheme, attn)(**{"input_ids": IDS, **inputs})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_decode_step_with_a_mask_that_forgets_the_cache_is_refused_and_the_cache_is_kept(scheme):
    model = tiny_lm(scheme)
    ids = random_ids(1, 9)
    cache = DynamicCache(config=model.config)
    model(ids[:, :8], cache=cache, use_cache=True)
    with pytest.raises(ValueError, match=r"shape \(1, 1\), expected \(1, 9\): .* the 8 cached ones and the 1 new"):
        model(ids[:, 8:], cache=cache, use_cache=True, attention_mask=torch.ones(1, 1, dtype=torch.long))
    assert cache.get_seq_length() == 8  # refused before anything was written
    step = model(ids[:, 8:], cache=cache, use_cache=True, attention_mask=torch.ones(1, 9, dtype=torch.long))
    torch.testing.assert_close(step.logits[:, -1], model(ids).logits[:, -1], rtol=0, atol=1e-5)


def test_negative_positions():
    """Learned positions have no vector for them (an IndexError inside, a device-side assert on CUDA): refused.
    Sinusoidal positions take them from the closed form, as they do positions past the table."""
    negative = torch.tensor([[-2, -1, 0, 1, 2, 3]])
    with pytest.raises(ValueError, match="position_ids contains -2: positions count from 0"):
        tiny_lm("learned")(IDS[:1], position_ids=negative)
    model = tiny_lm("sinusoidal")
    positions = model.model.positions
    torch.testing.assert_close(positions.embed(negative), sinusoidal_table(negative, 32) * positions.amplitude)
    assert torch.isfinite(model(IDS[:1], position_ids=negative).logits).all()


def corrupt_header(folder):
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[8:20] = b"not json ..."
    (folder / "model.safetensors").write_bytes(bytes(data))


def empty(folder):
    (folder / "model.safetensors").write_bytes(b"")


@pytest.mark.parametrize("damage, reason", [(truncate, "incomplete metadata, file not fully covered"),
                                            (corrupt_header, "invalid JSON in header"), (empty, "header too small")])
def test_unreadable_weights_are_named(saved, tmp_path, damage, reason):
    """safetensors says what is wrong but not with which file: the error names it."""
    folder = damaged(saved, tmp_path, damage)
    with pytest.raises(OSError, match=rf"{folder}/model.safetensors cannot be read \(.*{reason}.*\): the file is "
                                      rf"truncated or corrupted"):
        AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (edit_config(position_embedding_type="rope"), r" Validation error for field 'position_embedding_type':\s+"
                                                       r"ValueError: Value must be one of 'sinusoidal'"),
        (edit_config(hidden_size="32"), r" Validation error for field 'hidden_size':\s+TypeError: Field "
                                        r"'hidden_size' expected int, got str"),
        # Without these, the weights were loaded into a model built with defaults: sinusoidal positions for a
        # rotary model (one warning in the load report), or a vocabulary of 8192 (an error about sizes).
        (edit_config(position_embedding_type=None), r" has no position_embedding_type: a model built with the default"),
        (edit_config(vocab_size=None, hidden_size=None), r" has no vocab_size, hidden_size: "),
    ],
    ids=["unknown-scheme", "wrong-type", "no-scheme", "no-sizes"],
)
def test_an_invalid_config_file_is_named(saved, tmp_path, damage, message):
    folder = damaged(saved, tmp_path, damage)
    for load in (AutoConfig.from_pretrained, AutoModelForCausalLM.from_pretrained):
        with pytest.raises(ValueError, match=rf"^{folder}/config.json:?{message}"):
            load(folder)


def test_every_architecture_field_is_saved(saved):
    assert set(ARCHITECTURE_FIELDS) <= set(json.loads((saved[0] / "config.json").read_text()))


def test_pickled_weights_load_only_when_asked(saved, tmp_path):
    """A pytorch_model.bin is a pickle, which can run code when loaded: refused unless use_safetensors=False."""
    folder, logits = saved
    pickled = tmp_path / "pickled"
    shutil.copytree(folder, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save(AutoModelForCausalLM.from_pretrained(folder).state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match=rf"{pickled} holds pickled weights \(pytorch_model\*.bin\) but no "
                                      r"model.safetensors.*use_safetensors=False"):
        AutoModelForCausalLM.from_pretrained(pickled)
    model = AutoModelForCausalLM.from_pretrained(pickled, use_safetensors=False)
    torch.testing.assert_close(model(IDS).logits, logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mask_value", [2, -1, 0.5, 3.0])
@pytest.mark.parametrize("scheme", ["rotary", "alibi", "learned", "fire"])
def test_a_mask_with_values_other_than_0_and_1_is_refused(scheme, mask_value):
    """Positions are counted over the mask: a 2 would shift every later position (and silently change the output)."""
    mask = ONES.clone().to(torch.float32 if isinstance(mask_value, float) else torch.long)
    mask[1, 2] = mask_value
    with pytest.raises(ValueError, match=rf"attention_mask contains {mask_value!r}, expected 1 for a token and 0 for "
                                         r"padding"):
        tiny_lm(scheme)(IDS, attention_mask=mask)


def test_masks_of_0_and_1_in_any_dtype_and_additive_4d_masks_are_accepted():
    model = tiny_lm("alibi", "eager")
    expected = model(IDS).logits
    for dtype in (torch.long, torch.int32, torch.bool, torch.float32, torch.float16):
        torch.testing.assert_close(model(IDS, attention_mask=ONES.to(dtype)).logits, expected)
    additive = torch.zeros(2, 1, 6, 6).masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), -1e9)
    torch.testing.assert_close(model(IDS, attention_mask=additive).logits, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["input_ids", "token_type_ids", "position_ids"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool, torch.complex64])
def test_ids_of_a_non_integer_dtype_are_refused(name, dtype):
    values = {"input_ids": IDS, "token_type_ids": torch.zeros_like(IDS), "position_ids": torch.arange(6)[None]}
    inputs = dict(values, **{name: values[name].to(dtype)})
    with pytest.raises(ValueError, match=rf"{name} has dtype {dtype}: expected integers"):
        tiny_lm("learned")(**inputs)


def _cache_of(model, ids):
    cache = DynamicCache(config=model.config)
    model(ids, cache=cache, use_cache=True)
    return cache


@pytest.mark.parametrize(
    "other, rows, message",
    [
        (dict(num_hidden_layers=3), 2, r"cache has 3 layers, this model has num_hidden_layers=2"),
        (dict(num_attention_heads=2), 2, r"cache holds keys of 2 rows, 2 heads of size 16; this model and input need "
                                         r"2 rows, 4 heads of size 8"),
        (dict(hidden_size=64), 2, r"4 heads of size 16; this model and input need 2 rows, 4 heads of size 8"),
        (dict(), 1, r"cache holds keys of 1 rows, .* need 2 rows"),
        (dict(), 3, r"cache holds keys of 3 rows, .* need 2 rows"),
    ],
    ids=["layers", "heads", "head-size", "fewer-rows", "more-rows"],
)
@pytest.mark.parametrize("scheme", ["rotary", "t5"])
def test_a_cache_that_does_not_fit_is_refused_and_kept(scheme, other, rows, message):
    model = tiny_lm(scheme)
    cache = _cache_of(tiny_lm(scheme, **other), random_ids(rows, 4))
    before = [layer.keys.clone() for layer in cache.layers]
    with pytest.raises(ValueError, match=message):
        model(IDS, cache=cache, use_cache=True)
    assert all(torch.equal(layer.keys, keys) for layer, keys in zip(cache.layers, before))


def test_a_cache_that_is_not_a_cache_is_refused():
    model = tiny_lm("rotary")
    legacy = tuple((layer.keys, layer.values) for layer in _cache_of(model, IDS).layers)
    with pytest.raises(ValueError, match="cache is a tuple: pass a transformers Cache"):
        model(IDS, cache=legacy)


@pytest.mark.parametrize("bad_label", [VOCAB, VOCAB + 5, -1, -2])
def test_labels_outside_the_vocabulary_are_refused(bad_label):
    model = tiny_lm("rotary")
    labels = IDS.clone()
    labels[0, 0] = -100  # ignored positions are fine
    assert torch.isfinite(model(IDS, labels=labels).loss)
    labels[1, 3] = bad_label
    with pytest.raises(ValueError, match=rf"labels contains {bad_label}, outside the allowed range \[0, {VOCAB}\): "
                                         r".*or -100"):
        model(IDS, labels=labels)
    with pytest.raises(ValueError, match=r"labels has dtype torch.float32: expected integers"):
        model(IDS, labels=IDS.float())


@pytest.mark.parametrize("bad_label", [3, 7, -1, -100])
def test_class_labels_outside_num_labels_are_refused(bad_label):
    torch.manual_seed(0)
    classifier = PosAttnForSequenceClassification(tiny_config("alibi", num_labels=3)).eval()
    assert torch.isfinite(classifier(IDS, labels=torch.tensor([0, 2])).loss)
    with pytest.raises(ValueError, match=rf"labels contains {bad_label}, outside the allowed range \[0, 3\): class "
                                         r"labels index the num_labels=3 classes"):
        classifier(IDS, labels=torch.tensor([1, bad_label]))
    regression = PosAttnForSequenceClassification(tiny_config("alibi", num_labels=1)).eval()
    assert torch.isfinite(regression(IDS, labels=torch.tensor([7.5, -3.0])).loss)  # values, not classes


@pytest.mark.parametrize("prompt, new", [(10, 7), (16, 1), (3, 30)])
def test_generate_past_the_learned_maximum_is_refused_before_the_first_token(prompt, new):
    model = tiny_lm("learned", max_position_embeddings=16)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=rf"generation would reach {prompt + new} tokens .* past "
                                         rf"the 16 positions that learned positions have "
                                         rf"\(max_position_embeddings\)\. Ask for at most "
                                         rf"{max(16 - prompt, 0)} new tokens"):
        model.generate(random_ids(1, prompt), max_new_tokens=new, do_sample=False)
    assert calls == []
    assert model.generate(random_ids(1, 10), max_new_tokens=6, do_sample=False).shape == (1, 16)


def test_a_config_field_validator_refusal_is_an_error_with_status_2(saved, tmp_path, capsys):
    """A value that one of the config's validators refuses (huggingface_hub's StrictDataclassError, not a
    ValueError) is bad input like any other: its message, exit status 2, no traceback."""
    from hf_posattn.data.tasks import TASKS

    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    TASKS["copy"].tokenizer().save_pretrained(folder)
    assert posattn("generate", folder, "a", "--rope-parameters", '{"rope_type": "nonsense"}') == 2
    assert "its rope_type must be one of" in capsys.readouterr().err
    edit_config(hidden_act="no-such-activation")(folder)
    assert posattn("generate", folder, "a") == 2
    assert "hidden_act" in capsys.readouterr().err
