"""save_pretrained / from_pretrained, safetensors, and loading as remote code where hf_posattn is not installed."""

import json

import pytest
import torch
from conftest import SCHEMES, TEST_DATA, random_ids, run_python, tiny_lm
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import hf_posattn
from hf_posattn.model.positional import sinusoidal_table

pytestmark = pytest.mark.usefixtures("no_grad")


SAVED_BEFORE = TEST_DATA / "saved-before-layout"


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
