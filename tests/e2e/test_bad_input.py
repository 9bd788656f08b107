"""Bad input gets a clear error, and loses nothing: inputs of the wrong shape or range, truncated or corrupted
weights, config files with an unknown scheme or missing fields, and pickled weights nobody asked to unpickle."""

import pytest
from conftest import damaged, edit_config, run_python, truncate

pytestmark = pytest.mark.usefixtures("no_grad")


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
    assert out.startswith(f"OSError {truncated}/model.safetensors cannot be read"), out
    assert f"ValueError {unknown}/config.json: Validation error for field 'position_embedding_type'" in out, out
    assert out.splitlines()[-1] == "True"
