"""save_pretrained / from_pretrained in process: every scheme reloads identical from safetensors only, the saved
folder carries its code and auto_map, and that code imports only torch, transformers and itself (so it loads as
remote code; the load where hf_posattn is not installed is in tests/e2e/test_serialization.py)."""

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import SCHEMES, random_ids, tiny_lm
from transformers import AutoModelForCausalLM

import hf_posattn

pytestmark = pytest.mark.usefixtures("no_grad")


MODEL_FOLDER = Path(hf_posattn.__file__).parent / "model"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_save_and_reload_gives_identical_model(scheme, tmp_path):
    model = tiny_lm(scheme)
    ids = random_ids(2, 10)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.config.to_diff_dict() == model.config.to_diff_dict()
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=1e-6)
    assert loaded.lm_head.weight is loaded.model.embeddings.word_embeddings.weight
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()


def test_saved_folder_carries_code_and_auto_map(tmp_path):
    tiny_lm("rotary").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_posattn.PosAttnConfig",
        "AutoModel": "modeling_posattn.PosAttnModel",
        "AutoModelForCausalLM": "modeling_posattn.PosAttnForCausalLM",
        "AutoModelForSequenceClassification": "modeling_posattn.PosAttnForSequenceClassification",
    }
    code = sorted(path.name for path in tmp_path.glob("*.py"))
    assert code == sorted(path.name for path in MODEL_FOLDER.glob("*.py") if path.name != "__init__.py")
    assert (tmp_path / "generation_config.json").is_file()


def test_the_model_folder_imports_only_torch_transformers_and_itself():
    """What a saved folder carries runs where hf_posattn is not installed: its files import the standard library,
    torch, transformers (and huggingface_hub, whose `strict` dataclasses transformers' configs use) and each other,
    never the package's tools."""
    allowed = {"torch", "transformers", "huggingface_hub", *sys.stdlib_module_names}
    siblings = {path.stem for path in MODEL_FOLDER.glob("*.py")}
    for path in MODEL_FOLDER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert all(alias.name.split(".")[0] in allowed for alias in node.names), (path.name, ast.dump(node))
            elif isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, (path.name, node.module)
            elif isinstance(node, ast.ImportFrom):
                assert node.module.split(".")[0] in allowed, (path.name, node.module)


@pytest.mark.parametrize("tied", [True, False])
def test_a_checkpoint_resumed_by_the_trainer_misses_no_tensor(tied, tmp_path):
    """Saving leaves a tied head out (it is the embedding); the Trainer, resuming from such a checkpoint, loads it
    with `load_state_dict(strict=False)` and must find it whole: the head tied again, no "missing keys" warning. An
    untied head is saved, and read back."""
    from types import SimpleNamespace
    from unittest import mock

    import safetensors.torch
    from transformers import Trainer
    from transformers import trainer as trainer_module

    tiny_lm(tie_word_embeddings=tied).save_pretrained(tmp_path)
    saved = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert ("lm_head.weight" in saved) == (not tied)
    resumed = tiny_lm(seed=1, tie_word_embeddings=tied)
    loaded = resumed.load_state_dict(saved, strict=False)
    with mock.patch.object(trainer_module.logger, "warning") as warning:
        Trainer._issue_warnings_after_load(SimpleNamespace(model=resumed), loaded)
    assert not warning.called, warning.call_args
    head = saved["lm_head.weight"] if not tied else saved["model.embeddings.word_embeddings.weight"]
    assert torch.equal(resumed.lm_head.weight, head)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generation_past_the_table_warns_only_where_it_is_true(scheme):
    """transformers reminds that generation went past `max_position_embeddings`; a scheme that runs at any length
    does (its table is a cache), so it is not told so. A bounded one never gets there: it is refused first."""
    from unittest import mock

    from transformers.generation import stopping_criteria

    from hf_posattn.model.positional import POSITION_SCHEMES

    model = tiny_lm(scheme, max_position_embeddings=16)
    ids = random_ids(1, 12)
    if POSITION_SCHEMES[scheme].max_length(model.config) is not None:
        with pytest.raises(ValueError, match="past the 16 positions that learned positions have"):
            model.generate(ids, max_new_tokens=8, do_sample=False)
        return
    with mock.patch.object(stopping_criteria.logger, "warning_once") as warning:
        out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert out.shape[1] == 20 and not warning.called, warning.call_args
