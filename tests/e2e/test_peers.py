"""Peers: GPT-2 converts into an identical hf_posattn model; the embeddings equal BERT's."""

import sys

import pytest
import torch
from conftest import random_gpt2, random_ids

from hf_posattn import PosAttnForCausalLM

pytestmark = pytest.mark.usefixtures("no_grad")


def test_convert_script(tmp_path):
    gpt2 = random_gpt2()
    gpt2.save_pretrained(tmp_path / "gpt2")
    ids = random_ids(2, 10)
    expected = gpt2(ids).logits
    torch.save(ids, tmp_path / "ids.pt")
    import subprocess

    subprocess.run([sys.executable, "-m", "hf_posattn", "convert", str(tmp_path / "gpt2"), str(tmp_path / "ours")],
                   check=True, capture_output=True)
    loaded = PosAttnForCausalLM.from_pretrained(tmp_path / "ours").eval()
    torch.testing.assert_close(loaded(ids).logits, expected, rtol=0, atol=1e-5)
    # A second conversion into the same folder, or from a folder that holds no model: a message, no traceback.
    again = subprocess.run([sys.executable, "-m", "hf_posattn", "convert", str(tmp_path / "gpt2"), str(tmp_path / "ours")],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a model" in again.stderr and "Pass --overwrite" in again.stderr
    assert "--resume" not in again.stderr and "Traceback" not in again.stderr  # convert has no --resume
    missing = subprocess.run([sys.executable, "-m", "hf_posattn", "convert", str(tmp_path / "nothing"),
                              str(tmp_path / "other")], capture_output=True, text=True)
    assert missing.returncode == 2 and "error: cannot convert" in missing.stderr and "Traceback" not in missing.stderr
