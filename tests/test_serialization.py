"""save_pretrained / from_pretrained, safetensors, and loading as remote code where hf_posattn is not installed."""

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import SCHEMES, random_ids, run_python, tiny_lm
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import hf_posattn
from hf_posattn.model.positional import sinusoidal_table

MODEL_FOLDER = Path(hf_posattn.__file__).parent / "model"

pytestmark = pytest.mark.usefixtures("no_grad")


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


SAVED_BEFORE = Path(__file__).parent / "data" / "saved-before-layout"


def test_folders_saved_before_the_model_had_its_own_folder_load_as_they_were(tmp_path):
    """Folders saved by 0.1.0 (their own copies of the code, `auto_map` naming modules by file name) load with the
    package installed and, as remote code, without it, and give the logits they gave then."""
    expected = load_file(SAVED_BEFORE / "logits.safetensors")
    ids = expected["input_ids"][None]
    schemes = sorted(path.name for path in SAVED_BEFORE.iterdir() if path.is_dir())
    assert schemes == ["fire", "rotary", "sinusoidal", "t5"]
    for scheme in schemes:
        model = AutoModelForCausalLM.from_pretrained(SAVED_BEFORE / scheme).eval()
        assert type(model) is hf_posattn.PosAttnForCausalLM
        torch.testing.assert_close(model(ids).logits[0], expected[scheme], rtol=0, atol=1e-5)
    out = run_python(
        f"""
        import json, torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM
        expected = load_file({str(SAVED_BEFORE / "logits.safetensors")!r})
        gaps = {{}}
        for scheme in {schemes!r}:
            model = AutoModelForCausalLM.from_pretrained({str(SAVED_BEFORE)!r} + "/" + scheme,
                                                         trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                logits = model(expected["input_ids"][None]).logits[0]
            gaps[scheme] = (logits - expected[scheme]).abs().max().item()
        print(json.dumps(gaps))
        """,
        cwd=tmp_path,
    )
    assert all(gap < 1e-5 for gap in json.loads(out.strip().splitlines()[-1]).values()), out


def test_remote_code_loads_where_the_package_is_not_installed(tmp_path):
    """Every scheme (and rotary with transformers' `rope_parameters`), saved here, loads in a fresh interpreter in
    which `import hf_posattn` fails; logits, greedy generations and the rebuilt sinusoidal table are compared with
    this process's."""
    ids = random_ids(2, 9)
    models = {scheme: tiny_lm(scheme) for scheme in SCHEMES}
    models["rotary-yarn"] = tiny_lm("rotary", rope_parameters={"rope_type": "yarn", "factor": 2.0})
    expected = {}
    for folder, model in models.items():
        model.save_pretrained(tmp_path / folder)
        expected[folder] = (model(ids).logits, model.generate(ids, max_new_tokens=6, do_sample=False))
    torch.save({"ids": ids}, tmp_path / "inputs.pt")

    out = run_python(
        f"""
        import json, torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
        ids = torch.load({str(tmp_path / "inputs.pt")!r})["ids"]
        results = {{}}
        for scheme in {list(models)!r}:
            path = {str(tmp_path)!r} + "/" + scheme
            model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            assert type(AutoConfig.from_pretrained(path, trust_remote_code=True)).__name__ == "PosAttnConfig"
            assert type(AutoModel.from_pretrained(path, trust_remote_code=True)).__name__ == "PosAttnModel"
            classifier = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)
            assert type(classifier).__name__ == "PosAttnForSequenceClassification"
            with torch.no_grad():
                logits = model(ids).logits
                generated = model.generate(ids, max_new_tokens=6, do_sample=False)
            torch.save({{"logits": logits, "generated": generated}}, path + "/remote.pt")
            results[scheme] = True
            if scheme == "sinusoidal":
                torch.save(model.model.positions.table / model.config.initializer_range, path + "/table.pt")
        print("loaded", len(results))
        """,
        cwd=tmp_path,
    )
    assert f"loaded {len(models)}" in out
    for scheme, (logits, generated) in expected.items():
        remote = torch.load(tmp_path / scheme / "remote.pt")
        torch.testing.assert_close(remote["logits"], logits, rtol=0, atol=1e-6, msg=scheme)
        assert remote["generated"].tolist() == generated.tolist(), scheme
    # Non-persistent buffers are rebuilt on load, in a fresh process: the table is the closed form (times the fixed
    # amplitude, initializer_range), not memory.
    table = torch.load(tmp_path / "sinusoidal" / "table.pt")
    torch.testing.assert_close(table, sinusoidal_table(torch.arange(table.shape[0]), table.shape[1]))


def test_sinusoidal_table_after_from_pretrained_in_a_fresh_process(tmp_path):
    tiny_lm("sinusoidal").save_pretrained(tmp_path)
    run_python(
        f"""
        import math
        from transformers import AutoModelForCausalLM
        import hf_posattn
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r})
        table = model.model.positions.table / model.config.initializer_range
        d = table.shape[1]
        for pos in range(table.shape[0]):
            for i in range(d // 2):
                angle = pos / 10000 ** (2 * i / d)
                assert abs(table[pos, 2 * i].item() - math.sin(angle)) < 1e-6, (pos, i)
                assert abs(table[pos, 2 * i + 1].item() - math.cos(angle)) < 1e-6, (pos, i)
        print("table ok")
        """,
        cwd=tmp_path,
        hide_package=False,
    )
