"""Shared helpers: tiny configs for every scheme, and running Python where hf_posattn cannot be imported."""

import contextlib
import os
import resource
import signal
import subprocess
import sys
import textwrap

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import hf_posattn
from hf_posattn import POSITION_EMBEDDING_TYPES, PosAttnConfig
from hf_posattn.model.positional import POSITION_SCHEMES, SCORE_BIAS

SCHEMES = list(POSITION_EMBEDDING_TYPES)
# The schemes that add a bias to the attention scores, and those bounded in length (learned positions).
BIAS_SCHEMES = [name for name in SCHEMES if SCORE_BIAS in POSITION_SCHEMES[name].contributes()]
BOUNDED_SCHEMES = [name for name in SCHEMES if POSITION_SCHEMES[name].max_length(PosAttnConfig()) is not None]
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
