"""What the tests share, both tiers: tiny configs and models for every scheme, the command line called in-process,
Python run where hf_posattn cannot be imported, damaged model folders, schemes defined outside the package, and the
tiny runs that several tests read.

The fast tier (tests/fast: the model, the schemes, the checks, tables and figures on recorded inputs; no Trainer, no
subprocess, no compiled kernel) runs alone with `pytest tests/fast`; the end-to-end tier (tests/e2e: real Trainer
runs, the pipeline, torchrun, remote code with the package hidden, killed and resumed runs) with `pytest tests/e2e`.
"""

import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch import nn
from transformers import initialization as init

import hf_posattn
from hf_posattn import POSITION_EMBEDDING_TYPES, PosAttnConfig
from hf_posattn.cli import main
from hf_posattn.model.positional import POSITION_SCHEMES, SCORE_BIAS, PositionScheme, register_scheme

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"  # models saved by earlier versions, kept as they were

SCHEMES = list(POSITION_EMBEDDING_TYPES)
# The schemes that add a bias to the attention scores, and those bounded in length (learned positions).
BIAS_SCHEMES = [name for name in SCHEMES if SCORE_BIAS in POSITION_SCHEMES[name].contributes()]
BOUNDED_SCHEMES = [name for name in SCHEMES if POSITION_SCHEMES[name].max_length(PosAttnConfig()) is not None]
# Those whose bias flex_attention reads from a [heads, distances] table, and those it reads as a whole tensor.
TABLE_SCHEMES = [name for name in BIAS_SCHEMES if POSITION_SCHEMES[name].bias_from_distance_alone]
TENSOR_SCHEMES = [name for name in BIAS_SCHEMES if name not in TABLE_SCHEMES]
BACKENDS = ["eager", "sdpa", "flex_attention"]
VOCAB = 97
# The module names README.md gives for LoRA's target_modules: every projection.
LORA_TARGETS = ["qkv_proj", "o_proj", "up_proj", "down_proj"]


def tiny_config(scheme="sinusoidal", **overrides) -> PosAttnConfig:
    """A model small enough for a test to build and run in milliseconds; no dropout, so outputs are exact."""
    fields = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        position_embedding_type=scheme,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    fields.update(overrides)
    return PosAttnConfig(**fields)


def tiny_lm(scheme="sinusoidal", attn="sdpa", seed=0, **overrides):
    torch.manual_seed(seed)
    model = hf_posattn.PosAttnForCausalLM._from_config(tiny_config(scheme, **overrides), attn_implementation=attn)
    return model.eval()


def random_ids(batch, length, seed=0, low=3):
    """Token ids that avoid the special ids 0-2 (pad, bos, eos)."""
    return torch.randint(low, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def pad_left(rows):
    """Left-pad rows of different lengths with the pad id 0; return ids and attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    return ids, mask


def random_gpt2(seed=0, **overrides):
    """A tiny GPT-2 (transformers' own), the model hf_posattn converts and compares with."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64, bos_token_id=1,
                        eos_token_id=2, **overrides)
    return GPT2LMHeadModel(config).eval()


# ---- the command line, in this process ----

# A training run small enough for a test: seconds on 2 CPU cores.
TINY_RUN = ["--max-steps", "4", "--seq-len", "16", "--batch-size", "2", "--vocab-size", "300", "--eval-steps", "2",
            "--quiet"]


def posattn(*args) -> int:
    """`posattn ARGS` in this process; its exit status."""
    return main([str(arg) for arg in args])


def play_file(tmp_path_factory, characters: int) -> Path:
    """A user's text file: the first `characters` of a play from the corpus."""
    from hf_posattn.data.corpus import load_shakespeare

    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(load_shakespeare()["train"][0]["text"][:characters], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def play_text(tmp_path_factory):
    """A user's text file: the opening of a play from the corpus, 20 kB."""
    return play_file(tmp_path_factory, 20_000)


@pytest.fixture(scope="session")
def finished_run(play_text, tmp_path_factory):
    """A finished `posattn train` run on `play_text` (TINY_RUN: checkpoints at steps 2 and 4), shared by the tests
    that read one; a test that changes it takes a copy (`run`)."""
    folder = tmp_path_factory.mktemp("runs") / "model"
    assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", folder) == 0
    return folder


@contextlib.contextmanager
def stopped_before_finishing():
    """Inside the block, a training run stops after its last checkpoint, before it finishes (as one killed there):
    the run file without results, the checkpoints kept (a finished run removes them), no model; `posattn` returns
    130."""
    from unittest import mock

    with mock.patch("hf_posattn.training.run.finish", side_effect=KeyboardInterrupt):
        yield


@pytest.fixture(scope="session")
def unfinished_run(play_text, tmp_path_factory):
    """`finished_run`'s run stopped before it finished (`stopped_before_finishing`): its checkpoints at steps 2 and
    4, which --resume continues from; a test that changes it takes a copy."""
    folder = tmp_path_factory.mktemp("runs") / "model"
    with stopped_before_finishing():
        assert posattn("train", *TINY_RUN, "--data", play_text, "--output-dir", folder) == 130
    return folder


@pytest.fixture
def run(finished_run, tmp_path):
    """A copy of the finished run, to change."""
    folder = tmp_path / "model"
    shutil.copytree(finished_run, folder)
    return folder


def snapshot(folder) -> dict:
    """Every file under `folder` with a hash of its bytes: to show that a refused command changed nothing."""
    return {
        os.path.relpath(os.path.join(root, name), folder): hashlib.sha256(open(os.path.join(root, name), "rb").read()).hexdigest()
        for root, _, names in os.walk(folder) for name in names
    }


# Put first on sys.meta_path, it makes `import hf_posattn` fail as on a machine where it is not installed.
HIDE_PACKAGE = textwrap.dedent(
    """
    import sys

    class _HideHfPosattn:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_posattn":
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, _HideHfPosattn())
    try:
        import hf_posattn
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("hf_posattn is still importable")
    """
)


def run_python(code: str, cwd, hide_package=True, timeout=300) -> str:
    """Run `code` in a fresh interpreter (offline); return stdout, fail the test with stderr on error."""
    script = (HIDE_PACKAGE if hide_package else "") + textwrap.dedent(code)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def skip_flex_on_cpu_if(condition: bool, what: str):
    """torch 2.13's CPU flex_attention kernels go wrong on decode steps (fewer queries than keys) that need a mask
    or a score modification: static-cache slots not yet written are attended to (errors ~1e-3, Llama alike), and
    padding masks or a bias fail to compile (inductor CppCompileError). Full forwards are exact. On CPU those
    cases are skipped with this reason; they are checked on a GPU when one is lent."""
    if condition and not torch.cuda.is_available():
        pytest.skip(f"flex_attention on CPU (torch {torch.__version__}) cannot run {what}")


# Checks both tiers run: the fast tier (tests/fast/test_model.py) with eager and sdpa attention, the end-to-end tier
# (tests/e2e/test_attention_backends.py) with flex_attention, which compiles its kernels. Call them under no_grad.
def check_cache_steps_equal_full_forward(scheme, attn):
    """A prompt then one token at a time through a dynamic (and, but for flex_attention, a static) cache gives the
    logits of one full forward."""
    from transformers import DynamicCache, StaticCache

    skip_flex_on_cpu_if(attn == "flex_attention" and scheme in BIAS_SCHEMES, "decode steps with a score bias")
    model = tiny_lm(scheme, attn)
    ids = random_ids(2, 12)
    full = model(ids).logits

    caches = {"dynamic": DynamicCache(config=model.config)}
    if attn != "flex_attention":
        caches["static"] = StaticCache(config=model.config, max_cache_len=20)
    for name, cache in caches.items():
        out = model(ids[:, :5], cache=cache, use_cache=True)
        steps = [out.logits]
        for t in range(5, 12):
            out = model(ids[:, t : t + 1], cache=out.cache, use_cache=True)
            steps.append(out.logits)
        assert out.cache is cache
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5, msg=f"{name} cache")
    skip_flex_on_cpu_if(attn == "flex_attention", "static-cache decode steps")


def check_left_padding_matches_rows_alone(scheme, attn):
    """Rows of different lengths, left-padded into one batch, give the logits and the generations of each row alone."""
    model = tiny_lm(scheme, attn)
    rows = [random_ids(1, n, seed=n)[0] for n in (4, 9, 6)]
    ids, mask = pad_left(rows)
    batch_logits = model(ids, attention_mask=mask).logits
    for i, row in enumerate(rows):
        alone = model(row[None]).logits[0]
        torch.testing.assert_close(batch_logits[i, -len(row) :], alone, rtol=0, atol=1e-5)

    skip_flex_on_cpu_if(attn == "flex_attention", "padded decode steps")
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    for i, row in enumerate(rows):
        alone = model.generate(row[None], max_new_tokens=6, do_sample=False)
        assert generated[i, -6:].tolist() == alone[0, -6:].tolist()


@pytest.fixture
def user_text(tmp_path):
    """A user's text file: the opening of a play from the corpus, about 30 kB."""
    from hf_posattn.data.corpus import load_shakespeare

    path = tmp_path / "play.txt"
    path.write_text(load_shakespeare()["train"][0]["text"][:30_000], encoding="utf-8")
    return path


@pytest.fixture
def no_grad():
    with torch.no_grad():
        yield


def assert_png(path, size: tuple[int, int]):
    """`path` is a PNG of `size` (width, height) pixels with something drawn on it (its pixels vary)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (image.format, image.size, size)
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 20, f"{path} looks blank (pixel std {pixels.std():.1f})"


@contextlib.contextmanager
def disk_full_past(size: int):
    """Inside the block, writing past `size` bytes of any file fails as on a full disk, for real: the kernel
    refuses it (RLIMIT_FSIZE; EFBIG, "File too large"), for Python's writes and for those of Rust and C++ libraries
    (safetensors, torch.save) alike, whoever runs the tests (a read-only folder does not stop root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel's signal ends the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


# ---- damaged model folders ----

IDS = random_ids(2, 6)


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """A saved model folder and the logits it gives."""
    folder = tmp_path_factory.mktemp("saved") / "model"
    model = tiny_lm("rotary")
    model.save_pretrained(folder)
    with torch.no_grad():
        return folder, model(IDS).logits


def damaged(saved, tmp_path, damage):
    """A copy of the saved folder in `tmp_path`, with `damage` done to it."""
    folder = tmp_path / "model"
    shutil.copytree(saved[0], folder)
    damage(folder)
    return folder


def truncate(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def edit_config(**changes):
    """A damage that sets (or, with None, removes) fields of config.json."""
    def edit(folder):
        config = json.loads((folder / "config.json").read_text())
        for name, value in changes.items():
            if value is None:
                del config[name]
            else:
                config[name] = value
        (folder / "config.json").write_text(json.dumps(config))
    return edit


# ---- every scheme in every precision ----

# How a model comes to run in a dtype: built in it, loaded in it, cast to it, or kept in float32 under autocast. A
# table a scheme computes at construction (sinusoidal waves, rotary frequencies, ALiBi slopes) must follow each way.
MAKERS = ["from_config", "from_pretrained", "to", "autocast"]


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """One saved float32 model per scheme, for `from_pretrained(dtype=...)`."""
    root = tmp_path_factory.mktemp("saved")
    for scheme in SCHEMES:
        tiny_lm(scheme).save_pretrained(root / scheme)
    return root


def made(scheme: str, dtype: torch.dtype, maker: str, saved_models, attn: str = "sdpa"):
    """The tiny model of `scheme` made to run in `dtype` the way `maker` says, and the autocast context it runs
    under (only "autocast" enables it)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    if maker == "from_config":
        model = AutoModelForCausalLM.from_config(tiny_config(scheme), dtype=dtype, attn_implementation=attn)
    elif maker == "from_pretrained":
        model = AutoModelForCausalLM.from_pretrained(saved_models / scheme, dtype=dtype, attn_implementation=attn)
    else:
        model = AutoModelForCausalLM.from_pretrained(saved_models / scheme, attn_implementation=attn)
        if maker == "to":
            model = model.to(dtype)
    autocast = torch.autocast("cpu", dtype=dtype, enabled=maker == "autocast")
    return model.eval(), autocast


def matrix(dtypes):
    """(scheme, dtype, maker) cases; autocast to float32 is no autocast, so float32 has no autocast case."""
    return [pytest.param(scheme, dtype, maker, id=f"{scheme}-{str(dtype)[6:]}-{maker}")
            for scheme in SCHEMES for dtype in dtypes for maker in MAKERS
            if not (maker == "autocast" and dtype == torch.float32)]


# ---- schemes defined outside the package ----

class HalfDistanceBias(PositionScheme):
    """A learned multiple of the distance, the same for every head."""

    name = "half_distance"
    description = "a learned penalty proportional to the distance"
    citation = "a test"

    def __init__(self, config):
        super().__init__(config)
        self.slope = nn.Parameter(torch.empty(()))

    def initialize(self, initializer_range):
        nn.init.constant_(self.slope, 0.5)

    def attention_bias(self, distance, query_positions):
        return -(self.slope * distance.float())[:, None]


@pytest.fixture
def half_distance_registered():
    """HalfDistanceBias, registered for one test: others see the registry as it ships."""
    register_scheme(HalfDistanceBias)
    yield HalfDistanceBias
    del POSITION_SCHEMES[HalfDistanceBias.name]


class DistancePenalty(PositionScheme):
    """A learned penalty per head, proportional to how far back the key is: a one-parameter-per-head ALiBi."""

    name = "test_distance_penalty"
    description = "a learned per-head penalty proportional to the distance, defined inside a test"
    citation = "the hf_posattn tests, after Press et al. 2022"
    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.rate = nn.Parameter(torch.full((config.num_attention_heads,), 0.05))

    def initialize(self, initializer_range):
        init.constant_(self.rate, 0.05)

    def attention_bias(self, distance, query_positions):
        return -self.rate[:, None, None] * distance[:, None].clamp(min=0).to(self.rate.dtype)


@pytest.fixture(scope="module")
def penalty_registered():
    """DistancePenalty, registered for one test module."""
    register_scheme(DistancePenalty)
    yield DistancePenalty.name
    POSITION_SCHEMES.pop(DistancePenalty.name)


class SharedSquareRootBias(PositionScheme):
    """One bias for every head (a [rows, 1, queries, keys] answer): a learned multiple of the square root of the
    distance."""

    name = "shared_sqrt_distance"
    description = "a learned penalty of the square root of the distance, the same for every head"
    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.weight = nn.Parameter(torch.tensor(0.3))

    def attention_bias(self, distance, query_positions):
        return -(self.weight * distance.clamp(min=0).float().sqrt())[:, None]


@pytest.fixture
def sqrt_registered():
    """SharedSquareRootBias, registered for one test."""
    register_scheme(SharedSquareRootBias)
    yield SharedSquareRootBias.name
    del POSITION_SCHEMES[SharedSquareRootBias.name]


# ---- a real Slurm cluster ----

@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A single-node Slurm cluster with accounting (tests/slurm_cluster.py), started once for the session and stopped
    at its end, every job cancelled first; SLURM_CONF set meanwhile. Skipped where Slurm is not installed
    (`.ci/install-slurm`), except under CI. `slurm_cluster.work`: a folder for the jobs' files (not under /tmp)."""
    from slurm_cluster import cluster_for_tests

    with cluster_for_tests(tmp_path_factory.mktemp("slurm"), ROOT / "tests" / ".slurm-work") as cluster:
        yield cluster
