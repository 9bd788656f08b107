"""More than one process: `posattn train` under torchrun (DDP, gloo on CPU) against one process, and FSDP2 sharding
of the decoder layers that `_no_split_modules` names. Real torchrun processes, one thread each on the 2 cores."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_posattn.cli import main
from hf_posattn.runfolder import RUN_FILE

TESTS = Path(__file__).resolve().parent.parent  # where conftest.py is

# Records every write under a folder, then runs `posattn`: Python's audit events (open for writing, mkdir, rename,
# remove, copy) and the two savers that open files outside Python, torch.save and safetensors' save_file, wrapped
# before transformers imports them (they still save). torchrun starts it once per process; each process writes its
# record to LOG % RANK. (Rust's tokenizers.save is not seen: our code calls it on the main process only.)
RECORD_WRITES = textwrap.dedent(
    """
    import json, os, sys
    import safetensors.torch, torch

    folder, log = os.path.abspath(sys.argv[1]), sys.argv[2]
    writes = []

    def recorded(save, event, path_argument):
        def wrapper(*args, **kwargs):
            if inside(args[path_argument]):
                writes.append([event, os.fsdecode(args[path_argument])])
            return save(*args, **kwargs)
        return wrapper

    torch.save = recorded(torch.save, "torch.save", 1)
    safetensors.torch.save_file = recorded(safetensors.torch.save_file, "safetensors.save_file", 1)

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(folder)

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and inside(path):
                writes.append([event, os.fsdecode(path)])
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree",
                       "shutil.copyfile"):
            paths = [arg for arg in args[:2] if inside(arg)]
            if paths:
                writes.append([event, os.fsdecode(paths[-1])])

    sys.addaudithook(audit)
    from hf_posattn.cli import main

    status = main(sys.argv[3:])
    with open(log % os.environ["RANK"], "w") as file:
        json.dump(writes, file)
    sys.exit(status)
    """
)


def torchrun(script, *args, timeout=300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 script args`, one thread per process, offline."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               *map(str, args)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def losses(folder) -> dict:
    """Training and evaluation losses by step, from the finished run's trainer_state.json."""
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {kind: {entry["step"]: entry[kind] for entry in history if kind in entry}
            for kind in ("loss", "grad_norm", "eval_loss")}


def test_ddp_matches_one_process_and_only_rank_0_writes(user_text, tmp_path):
    """Two processes of batch 4 against one of batch 8 (the same global batch, seed and data order): the same loss
    and gradient norm at every step. Only process 0 writes to the output folder, and only it prints the results."""
    options = ["--data", user_text, "--seq-len", "16", "--vocab-size", "300", "--max-steps", "6", "--eval-steps", "3",
               "--quiet"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main([str(arg) for arg in ["train", *options, "--batch-size", "8", "--output-dir", single]]) == 0
    wrapper = tmp_path / "record_writes.py"
    wrapper.write_text(RECORD_WRITES)
    out = torchrun(wrapper, ddp, tmp_path / "writes-%s.json", "train", *options, "--batch-size", "4",
                   "--output-dir", ddp).stdout

    one, two = losses(single), losses(ddp)
    assert sorted(two["loss"]) == list(range(1, 7))
    for kind in ("loss", "grad_norm"):
        assert two[kind] == pytest.approx(one[kind], rel=1e-5), kind
    # Evaluation splits the validation blocks between the processes, and accelerate completes each process's
    # batches with repeated blocks (even_batches), which the Trainer's per-batch mean counts: a little off.
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=2e-3)
    run = json.loads((ddp / RUN_FILE).read_text())["results"]
    assert run["tokens_seen"] == 6 * 8 * 16 and run["hardware"].startswith("2 processes")

    records = {rank: json.loads((tmp_path / f"writes-{rank}.json").read_text()) for rank in (0, 1)}
    writes = {rank: {os.path.relpath(path, ddp) for _, path in record} for rank, record in records.items()}
    # The Trainer has every process keep its own random state in each checkpoint, to resume its random stream.
    assert writes[1] == {"checkpoint-3", "checkpoint-3/rng_state_1.pth", "checkpoint-6", "checkpoint-6/rng_state_1.pth"}
    assert {RUN_FILE, "README.md", "config.json", "model.safetensors", "tokenizer_config.json", "training_args.bin",
            "checkpoint-6/trainer_state.json", "checkpoint-6/model.safetensors", "checkpoint-6/optimizer.pt",
            "checkpoint-6/rng_state_0.pth"} <= writes[0]
    assert out.count("saved model, tokenizer, code and model card") == 1


FSDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule, fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, sys.argv[1])
    from conftest import random_ids, tiny_lm

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, reference = tiny_lm("rotary").train(), tiny_lm("rotary").train()
    # What accelerate's FSDP2 plugin wraps with the Trainer's default policy: the classes in `_no_split_modules` (the
    # decoder layers), then the root.
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    wrapped = [name for name, module in model.named_modules() if policy(module)]
    for name, module in model.named_modules():
        if name in wrapped:
            fully_shard(module)
    fully_shard(model)
    sharded = all(isinstance(p, DTensor) for p in model.parameters())

    # Each process trains on its half of the batch; the reference on all of it, in one process.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
    ids = random_ids(2 * world, 12, seed=5)
    mine = ids[2 * rank : 2 * rank + 2]
    losses, reference_losses = [], []
    for step in range(3):
        loss = model(input_ids=mine, labels=mine).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
        loss = reference(input_ids=ids, labels=ids).loss
        loss.backward()
        reference_optimizer.step()
        reference_optimizer.zero_grad()
        reference_losses.append(loss.item())

    # The full weights, gathered on every process (a collective); process 0 saves them as a model folder.
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        reference.save_pretrained(sys.argv[2], state_dict=state)
        loaded = AutoModelForCausalLM.from_pretrained(sys.argv[2]).eval()
        with torch.no_grad():
            difference = (loaded(ids).logits - reference.eval()(ids).logits).abs().max().item()
        fsdp_modules = [name for name, module in model.named_modules() if isinstance(module, FSDPModule)]
        json.dump({"wrapped": wrapped, "fsdp_modules": fsdp_modules, "sharded": sharded, "losses": losses,
                   "reference_losses": reference_losses, "difference": difference}, open(sys.argv[3], "w"))
    dist.destroy_process_group()
    """
)


def test_fsdp2_shards_the_decoder_layers_and_saves_a_model_that_loads(tmp_path):
    """FSDP2 (`fully_shard`, gloo on CPU) with the wrapping accelerate's FSDP2 plugin chooses: each decoder layer,
    then the root. Three steps on two processes give the losses of one unsharded process on the whole batch, and the
    gathered weights saved with save_pretrained load back as the same model. (The Trainer reaches FSDP through
    accelerate, which turns FSDP on for GPUs only; on CPU it would silently train with DDP.)"""
    script = tmp_path / "fsdp.py"
    script.write_text(FSDP_SCRIPT)
    torchrun(script, TESTS, tmp_path / "model", tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["wrapped"] == ["model.layers.0", "model.layers.1"]
    assert report["fsdp_modules"] == ["", "model.layers.0", "model.layers.1"]
    assert report["sharded"]
    assert report["losses"] == pytest.approx(report["reference_losses"], rel=1e-5)
    assert report["losses"][-1] < report["losses"][0]
    assert report["difference"] < 1e-5
    assert (tmp_path / "model" / "model.safetensors").is_file()
