"""Schemes end to end: a scheme registered at run time (defined in conftest) builds, trains, saves and loads, and
refuses flash attention for its bias; the newer schemes compile as one graph under torch.compile. Each scheme's own
formula is checked in tests/fast/test_scheme_formulas.py."""

import pytest
import torch
from conftest import HalfDistanceBias, random_ids, tiny_lm
from transformers import AutoModelForCausalLM

from hf_posattn import POSITION_EMBEDDING_TYPES
from hf_posattn.model.positional import (
    SCORE_BIAS,
)

NEW_SCHEMES = ["t5", "kerple", "fire", "xpos"]


def test_a_scheme_registered_at_run_time_builds_trains_saves_and_loads(half_distance_registered, tmp_path):
    assert "half_distance" in POSITION_EMBEDDING_TYPES and "half_distance" in list(POSITION_EMBEDDING_TYPES)
    model = tiny_lm("half_distance").train()
    assert isinstance(model.model.positions, HalfDistanceBias)
    assert model.model.positions.contributes() == {SCORE_BIAS}
    ids = random_ids(2, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    assert model.model.positions.slope.item() != 0.5
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.model.positions.slope.item() == model.model.positions.slope.item()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="adds a bias to the attention scores"):
        loaded.set_attn_implementation("flash_attention_2")


@pytest.mark.parametrize("scheme", NEW_SCHEMES)
@torch.no_grad()
def test_new_schemes_compile_as_one_graph(scheme):
    model = tiny_lm(scheme)
    ids = random_ids(2, 9)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
