"""Performance properties that can fail on any machine: `torch.compile` takes the whole model without graph breaks,
sdpa builds no T x T tensor, and the side-by-side benchmark against GPT-2 runs (no timing assertions: the
figures are in benchmarks/RESULTS.md)."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import LORA_TARGETS, ROOT, SCHEMES, random_ids, tiny_lm
from transformers import StaticCache


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_training_step_compiles_as_one_graph():
    """Forward and backward under `fullgraph=True` (a graph break raises), with the gradients of eager mode.
    Rotary: the scheme with the most work inside attention. 6-20 s on 2 CPU cores (warm or cold compile cache)."""
    ids = random_ids(2, 16)
    eager, compiled = tiny_lm("rotary").train(), tiny_lm("rotary").train()
    eager(ids, labels=ids).loss.backward()
    loss = torch.compile(compiled, fullgraph=True)(ids, labels=ids).loss
    loss.backward()
    torch.testing.assert_close(loss, eager(ids, labels=ids).loss)
    for (name, p_eager), (_, p_compiled) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, rtol=1e-4, atol=1e-6, msg=name)


@torch.no_grad()
def test_static_cache_decode_step_compiles_once():
    """The decode step with a StaticCache compiles to one graph, and later steps reuse it (no recompilation: the
    cache length is a tensor). ALiBi: its bias depends on the step. 1-10 s on 2 CPU cores (warm or cold cache)."""
    model = tiny_lm("alibi")
    ids = random_ids(1, 12)
    expected = model(ids).logits
    cache = StaticCache(config=model.config, max_cache_len=16)
    logits = [model(ids[:, :8], cache=cache, use_cache=True).logits]  # the prefill runs eagerly, as in generate
    step = torch.compile(model, fullgraph=True)
    for t in range(8, 12):
        # Shapes stay the same from step to step: the mask spans the whole cache, with its unwritten slots masked.
        mask = (torch.arange(16) <= t).long()[None]
        with torch.compiler.set_stance("fail_on_recompile" if t > 8 else "default"):
            out = step(ids[:, t : t + 1], cache=cache, use_cache=True, attention_mask=mask,
                       position_ids=torch.tensor([[t]]))
        logits.append(out.logits)
    torch.testing.assert_close(torch.cat(logits, dim=1), expected, rtol=0, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("scheme", SCHEMES)
def test_static_cache_decode_step_traces_as_one_graph_for_every_scheme(scheme):
    """What `generate` compiles with a static cache: a decode step whose positions come from the mask, traced whole
    (`fullgraph=True`: a branch on the cache's length, a tensor, would raise). Traced only (backend "eager")."""
    model = tiny_lm(scheme)
    ids = random_ids(1, 10)
    expected = model(ids).logits
    cache = StaticCache(config=model.config, max_cache_len=12)
    logits = [model(ids[:, :8], cache=cache, use_cache=True).logits]
    step = torch.compile(model, fullgraph=True, backend="eager")
    for t in (8, 9):
        mask = (torch.arange(12) <= t).long()[None]
        logits.append(step(ids[:, t : t + 1], cache=cache, use_cache=True, attention_mask=mask).logits)
    torch.testing.assert_close(torch.cat(logits, dim=1), expected, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def quick_benchmark(tmp_path_factory):
    """`scripts/benchmark.py --quick`, as CI runs it: tiny sizes, two pairs per row."""
    out = tmp_path_factory.mktemp("benchmark") / "quick.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text()), result.stdout


def test_benchmark_quick_runs_every_row(quick_benchmark):
    report, table = quick_benchmark
    assert report["correctness"]["losses_equal"] and report["correctness"]["greedy_tokens_identical"]
    from hf_posattn.model.positional import POSITION_SCHEMES

    schemes = set(POSITION_SCHEMES)  # every registered scheme gets its rows
    for name in ("train", "prefill", "decode b1 dynamic", "decode b8 dynamic", "decode b1 static",
                 "peak memory train"):
        rows = [row for row in report["rows"] if row["name"] == name]
        assert {row["scheme"] for row in rows} == schemes, name
        assert all(row["a_value"] > 0 and row["b_value"] > 0 for row in rows), name
    assert "greedy tokens identical: True" in table


def test_sdpa_prefill_memory_grows_linearly(quick_benchmark):
    """At T and 4T, sdpa (no mask needed) grows ~4x: no T x T score tensor. Eager attention, which materialises
    the scores, grows ~16x in the same measurement, so the measurement can see a quadratic term."""
    report, _ = quick_benchmark
    growth = {row["scheme"]: row["ratio"] for row in report["rows"] if row["name"] == "prefill memory 4T / T"}
    assert growth["ours sdpa"] < 6, growth
    assert growth["ours eager"] > 8, growth


def test_lora_takes_the_module_names_the_readme_gives():
    """README.md: LoRA `target_modules=["qkv_proj", "o_proj", "up_proj", "down_proj"]` reaches every projection."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_lm("rotary").train(), LoraConfig(r=4, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(LORA_TARGETS)
    ids = random_ids(2, 8)
    model(input_ids=ids, labels=ids).loss.backward()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad)
