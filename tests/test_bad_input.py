"""Bad input gets a clear error, and loses nothing: inputs of the wrong shape or range, truncated or corrupted
weights, config files with an unknown scheme or missing fields, and pickled weights nobody asked to unpickle."""

import json
import shutil

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from hf_posattn.configuration_posattn import ARCHITECTURE_FIELDS
from hf_posattn.positional import sinusoidal_table

from conftest import SCHEMES, random_ids, run_python, tiny_lm


pytestmark = pytest.mark.usefixtures("no_grad")

IDS = random_ids(2, 6)
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


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved model folder and the logits it gives."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    model = tiny_lm("rotary")
    model.save_pretrained(folder)
    return folder, model(IDS).logits


def damaged(saved, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    damage(folder)
    return folder


def truncate(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


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


def edit_config(**changes):
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        for name, value in changes.items():
            if value is None:
                del config[name]
            else:
                config[name] = value
        (folder / "config.json").write_text(json.dumps(config))
    return edit


@pytest.mark.parametrize(
    "damage, message",
    [
        (edit_config(position_embedding_type="rope"), r" PosAttnConfig.position_embedding_type='rope' is invalid: "
                                                       r"expected one of"),
        (edit_config(hidden_size="32"), r" PosAttnConfig.hidden_size='32' is invalid: expected a positive integer"),
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


def test_damaged_files_are_named_where_the_package_is_not_installed(saved, tmp_path):
    """The same errors from the code in the folder (remote code), which also tells the Trainer how to shift labels."""
    truncated = damaged(saved, tmp_path / "a", truncate)
    unknown = damaged(saved, tmp_path / "b", edit_config(position_embedding_type="rope"))
    out = run_python(
        f"""
        from transformers import AutoModelForCausalLM
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        for folder in ({str(truncated)!r}, {str(unknown)!r}):
            try:
                AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
            except (OSError, ValueError) as error:
                print(type(error).__name__, error)
        print("PosAttnForCausalLM" in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
        """,
        cwd=tmp_path,
    )
    lines = out.splitlines()
    assert lines[0].startswith(f"OSError {truncated}/model.safetensors cannot be read"), lines[0]
    assert lines[1].startswith(f"ValueError {unknown}/config.json: PosAttnConfig.position_embedding_type="), lines[1]
    assert lines[2] == "True"


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
