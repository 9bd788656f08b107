"""hf_posattn against transformers' own GPT-2, side by side, at the same size.

GPT-2 is `GPT2LMHeadModel` (sdpa). Its hf_posattn twin is `hf_posattn.from_gpt2` of the same weights
(learned positions): both compute the same function, which is checked before anything is timed (equal losses,
identical greedy tokens). The other position schemes run against the same GPT-2, with the twin's configuration
and only `position_embedding_type` changed.

Timing. A shared machine is noisy: another process can halve the speed of either model for seconds. So the two
models run interleaved in one process, A B B A A B ..., and each pair gives one ratio (GPT-2's time / ours);
the table shows the median ratio and its p10-p90 spread, next to each model's median throughput. A ratio above 1
means hf_posattn is faster (or, for memory, that it uses more).

Rows: training step (forward + backward + AdamW), prefill, decode with `generate` (DynamicCache at batch 1 and 8,
StaticCache at batch 1, and static + `torch.compile` with `--compile`), peak memory (RSS growth on CPU, measured in
a fresh process; `max_memory_allocated` on GPU), and the prefill's peak memory at T and 4T (it grows linearly when
no T x T score tensor is built). On a GPU, training rows also give MFU (nanoGPT's formula).

    python scripts/benchmark.py                                       # the CPU table of benchmarks/RESULTS.md
    python scripts/benchmark.py --quick                               # a smoke test: seconds, tiny model
    python scripts/benchmark.py --device cuda --dtype bf16 --compile  # GPT-2 124M dimensions, T = 1024
    python scripts/benchmark.py --json results.json                   # the table as JSON as well
    python scripts/benchmark.py --bias-memory                         # score biases: sdpa vs flex, T and 4T
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation import CompileConfig

from hf_posattn import POSITION_EMBEDDING_TYPES, PosAttnConfig, PosAttnForCausalLM
from hf_posattn.common import hardware
from hf_posattn.model.positional import POSITION_SCHEMES, SCORE_BIAS
from hf_posattn.sharing.convert import from_gpt2


@dataclasses.dataclass(frozen=True)
class Sizes:
    layers: int
    hidden: int
    heads: int
    vocab: int
    batch: int  # training and prefill batch
    seq: int  # training and prefill length T
    memory_seq: int  # prefill memory is measured at this length and 4x it
    prompt: int  # decode: prompt length
    new_tokens: int  # decode: tokens generated per call
    pairs: int  # timed A/B pairs per row
    warmup: int  # untimed calls of each model first


PRESETS = {
    # The CPU targets: 4 layers x 256 hidden, 4 heads, vocab 8192, batch 8 x 256.
    "cpu": Sizes(layers=4, hidden=256, heads=4, vocab=8192, batch=8, seq=256, memory_seq=256, prompt=16,
                 new_tokens=64, pairs=10, warmup=2),
    # GPT-2 124M, T = 1024 (vocab 50304 as nanoGPT: a multiple of 64 for the tensor cores).
    "cuda": Sizes(layers=12, hidden=768, heads=12, vocab=50304, batch=16, seq=1024, memory_seq=1024, prompt=16,
                  new_tokens=256, pairs=10, warmup=3),
    # Seconds on a laptop; memory_seq is long enough for a T x T tensor to stand out in the 4T / T row.
    "quick": Sizes(layers=2, hidden=64, heads=4, vocab=512, batch=2, seq=32, memory_seq=512, prompt=8, new_tokens=8,
                   pairs=2, warmup=1),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PEAK_TFLOPS = 989.0  # H100/H200 SXM, bf16 dense
OTHER_SCHEMES = [s for s in POSITION_EMBEDDING_TYPES if s != "learned"]

# The targets, for the full-size presets: (row name, scheme) -> bounds. `ratio`: the least B/A (the most,
# for memory); `mfu`: the least MFU of ours; `tokens`: the least tokens/s of B.
TARGETS = {
    "cpu": {
        **{("train", s): dict(ratio=1.05 if s == "learned" else 0.9) for s in POSITION_EMBEDDING_TYPES},
        ("decode b1 dynamic", "learned"): dict(ratio=1.2),
        ("decode b8 dynamic", "learned"): dict(ratio=1.05),
        **{("peak memory train", s): dict(ratio=1.0) for s in POSITION_EMBEDDING_TYPES},
    },
    "cuda": {
        ("train", "learned"): dict(ratio=1.1, mfu=0.45),
        ("decode b1 static+compile vs our dynamic eager", "learned"): dict(ratio=3.0, tokens=2000),
    },
}


# ----------------------------------------------------------------------------------------------------------- models

def gpt2_config(sizes: Sizes) -> GPT2Config:
    # No dropout: both models must compute one function, and dropout's random masks would differ. No special
    # tokens: generation runs to max_new_tokens.
    return GPT2Config(n_layer=sizes.layers, n_embd=sizes.hidden, n_head=sizes.heads, vocab_size=sizes.vocab,
                      n_positions=max(1024, sizes.seq, 4 * sizes.memory_seq), resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)


def build_gpt2(sizes: Sizes, device, seed=0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel._from_config(gpt2_config(sizes), attn_implementation="sdpa").to(device)


def build_ours(sizes: Sizes, device, scheme="learned", seed=0, attn="sdpa") -> PosAttnForCausalLM:
    """The converted twin of `build_gpt2(sizes)` for "learned"; the same configuration with another scheme
    (freshly initialised) otherwise."""
    twin = from_gpt2(build_gpt2(sizes, "cpu", seed))
    if scheme == "learned" and attn == "sdpa":
        return twin.to(device)
    config = PosAttnConfig(**{**twin.config.to_diff_dict(), "position_embedding_type": scheme})
    torch.manual_seed(seed)
    return PosAttnForCausalLM._from_config(config, attn_implementation=attn).to(device)


def inputs(sizes: Sizes, device, batch=None, seq=None, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, sizes.vocab, (batch or sizes.batch, seq or sizes.seq), generator=generator).to(device)


def params_without_positions(model) -> int:
    """N of nanoGPT's MFU formula: every parameter (tied ones once) but the position embeddings."""
    positions = model.transformer.wpe if isinstance(model, GPT2LMHeadModel) else model.model.positions
    return model.num_parameters() - sum(p.numel() for p in positions.parameters())


# -------------------------------------------------------------------------------------------------------- workloads

class TrainStep:
    """forward + backward + AdamW step; `torch.compile`d forward and backward with `compile`. No KV cache, as the
    Trainer sets it (`use_cache=False`)."""

    def __init__(self, model, ids, compile=False):
        self.model, self.ids = model.train(), ids
        fused = ids.device.type == "cuda"  # the fused CUDA kernel; the default (foreach) elsewhere
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)
        self.forward = torch.compile(model) if compile else model

    def __call__(self):
        loss = self.forward(input_ids=self.ids, labels=self.ids, use_cache=False).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class Prefill:
    """The first forward of `generate`: the whole prompt, a fresh cache, logits of the last position only."""

    def __init__(self, model, ids):
        self.model, self.ids = model.eval(), ids

    @torch.no_grad()
    def __call__(self):
        self.model(self.ids, use_cache=True, logits_to_keep=1)


class Decode:
    """`generate` of `new_tokens` greedy tokens after a short prompt; with a static cache, and compiled decoding
    steps (generate's own `compile_config`) when asked."""

    def __init__(self, model, prompt, new_tokens, cache="dynamic", compile=False):
        self.model, self.prompt = model.eval(), prompt
        # An explicit mask: generate would otherwise take any token equal to pad_token_id for padding.
        self.kwargs = dict(attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0)
        if cache == "static":
            self.kwargs["cache_implementation"] = "static"
        if compile:
            on_gpu = prompt.device.type == "cuda"
            config = CompileConfig(fullgraph=True, mode="reduce-overhead" if on_gpu else "default")
            config._compile_all_devices = not on_gpu  # generate compiles on accelerators only, unless told
            self.kwargs["compile_config"] = config
        else:
            self.kwargs["disable_compile"] = True

    @torch.no_grad()
    def __call__(self):
        return self.model.generate(self.prompt, **self.kwargs)


# ------------------------------------------------------------------------------------------------------- measuring

def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(run_a, run_b, pairs, warmup, device):
    """Seconds per call of each, timed A B B A A B ...: both see the same machine, whatever else runs on it."""
    for _ in range(warmup):
        run_a(), run_b()
    times = {run_a: [], run_b: []}
    for pair in range(pairs):
        for run in (run_a, run_b) if pair % 2 == 0 else (run_b, run_a):
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[run].append(time.perf_counter() - start)
    return times[run_a], times[run_b]


def spread(ratios):
    """Median, p10 and p90 of the per-pair ratios."""
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    deciles = statistics.quantiles(ratios, n=10, method="inclusive")
    return statistics.median(ratios), deciles[0], deciles[-1]


def throughput_row(name, scheme, tokens, run_a, run_b, sizes, device, a="gpt2", b="ours"):
    times_a, times_b = interleaved(run_a, run_b, sizes.pairs, sizes.warmup, device)
    ratio, p10, p90 = spread([ta / tb for ta, tb in zip(times_a, times_b)])
    return dict(name=name, scheme=scheme, unit="tok/s", a=a, b=b,
                a_value=tokens / statistics.median(times_a), b_value=tokens / statistics.median(times_b),
                ratio=ratio, p10=p10, p90=p90)


def peak_memory(specs: list[dict], device) -> list[float]:
    """Peak memory (MiB) that one call of each workload adds: `max_memory_allocated` on a GPU; on CPU, the growth of
    the resident set, measured in a fresh interpreter whose allocator hands large blocks back to the system when
    they are freed (glibc's default keeps them, and one model's leftovers would hide the next one's peak)."""
    if torch.device(device).type == "cuda":
        return [_peak_memory_here(spec) for spec in specs]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    result = subprocess.run([sys.executable, __file__, "--memory-worker", json.dumps(specs)], env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the memory worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _resident_mib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_memory_here(spec: dict) -> float:
    """One call of the workload after a first, untimed one (which builds the optimizer state and whatever torch
    allocates once): the peak over the memory in use just before it."""
    sizes, device = Sizes(**spec["sizes"]), spec["device"]
    if spec["model"] == "gpt2":
        model = build_gpt2(sizes, device)
    else:
        model = build_ours(sizes, device, spec["scheme"], attn=spec.get("attn", "sdpa"))
    ids = inputs(sizes, device, seq=spec.get("seq"))
    model = model.to(DTYPES[spec["dtype"]])
    workload = TrainStep(model, ids) if spec["workload"] == "train" else Prefill(model, ids)
    workload()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        workload()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = _resident_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) starts again from the current resident set
    workload()
    return _resident_mib("VmHWM") - before


# ------------------------------------------------------------------------------------------------------------ rows

def check_converted_pair(gpt2, ours, sizes, device):
    """Equal losses and identical greedy tokens, in float32, before anything is cast or timed."""
    ids = inputs(sizes, device)
    with torch.no_grad():
        loss_a = gpt2.eval()(ids, labels=ids).loss.item()
        loss_b = ours.eval()(ids, labels=ids).loss.item()
    prompt = ids[:, : sizes.prompt]
    tokens_a = Decode(gpt2, prompt, sizes.new_tokens)().tolist()
    tokens_b = Decode(ours, prompt, sizes.new_tokens)().tolist()
    return dict(loss_gpt2=loss_a, loss_ours=loss_b, loss_difference=abs(loss_a - loss_b),
                losses_equal=abs(loss_a - loss_b) <= 1e-5, greedy_tokens_identical=tokens_a == tokens_b)


def benchmark(args, sizes: Sizes, device, dtype):
    """All rows, for the converted pair first, then for each other scheme against the same GPT-2."""
    gpt2 = build_gpt2(sizes, device)
    twin = from_gpt2(gpt2)
    correctness = check_converted_pair(gpt2, twin, sizes, device)
    if not (correctness["losses_equal"] and correctness["greedy_tokens_identical"]):
        # Timing two models that compute different functions would compare nothing.
        sys.exit(f"the converted pair differs, nothing timed: {correctness}")
    gpt2.to(dtype)
    ids, prompt = inputs(sizes, device), inputs(sizes, device, seq=sizes.prompt)
    flops_gpt2 = 6 * params_without_positions(gpt2) + 12 * sizes.layers * sizes.hidden * sizes.seq
    gpt2_runs = {}  # one GPT-2 workload object per row: its optimizer and compiled graphs are built once

    def against_gpt2(key, make):
        if key not in gpt2_runs:
            gpt2_runs[key] = make(gpt2)
        return gpt2_runs[key]

    rows = []
    for scheme in args.schemes:
        ours = (twin if scheme == "learned" else build_ours(sizes, device, scheme)).to(dtype)
        print(f"-- {scheme}", file=sys.stderr, flush=True)

        row = throughput_row("train", scheme, ids.numel(),
                             against_gpt2("train", lambda m: TrainStep(m, ids, args.compile)),
                             TrainStep(ours, ids, args.compile), sizes, device)
        if torch.device(device).type == "cuda":
            flops_ours = 6 * params_without_positions(ours) + 12 * sizes.layers * sizes.hidden * sizes.seq
            row["mfu_gpt2"] = row["a_value"] * flops_gpt2 / (args.peak_tflops * 1e12)
            row["mfu_ours"] = row["b_value"] * flops_ours / (args.peak_tflops * 1e12)
        rows.append(row)
        rows.append(throughput_row("prefill", scheme, ids.numel(),
                                   against_gpt2("prefill", lambda m: Prefill(m, ids)), Prefill(ours, ids),
                                   sizes, device))
        decodes = [("decode b1 dynamic", 1, "dynamic", False), ("decode b8 dynamic", 8, "dynamic", False),
                   ("decode b1 static", 1, "static", False)]
        if args.compile:
            decodes.append(("decode b1 static+compile", 1, "static", True))
        for name, batch, cache, compile in decodes:
            make = lambda m, b=batch, c=cache, k=compile: Decode(m, prompt[:b], sizes.new_tokens, c, k)  # noqa: E731
            rows.append(throughput_row(name, scheme, batch * sizes.new_tokens, against_gpt2(name, make), make(ours),
                                       sizes, device))
        if args.compile:
            # The GPU target compares our own decoding: static cache + compile against dynamic cache, eager.
            rows.append(throughput_row("decode b1 static+compile vs our dynamic eager", scheme, sizes.new_tokens,
                                       Decode(ours, prompt[:1], sizes.new_tokens),
                                       Decode(ours, prompt[:1], sizes.new_tokens, "static", True), sizes, device,
                                       a="ours dynamic", b="ours static+compile"))
        del ours

    rows += memory_rows(args, sizes, device)
    return rows, correctness


def memory_rows(args, sizes, device):
    """Peak memory of a training step for GPT-2 and every scheme; the prefill's at T and 4T (`memory_seq`), where
    sdpa without a mask or bias builds no T x T tensor (linear growth, 4x) and eager attention does."""
    base = dict(sizes=dataclasses.asdict(sizes), device=device, dtype=args.dtype)
    train = [dict(base, model="gpt2", workload="train")]
    train += [dict(base, model="ours", scheme=scheme, workload="train") for scheme in args.schemes]
    scaling = {"gpt2 sdpa": dict(model="gpt2"), "ours sdpa": dict(model="ours", scheme="learned"),
               "ours eager": dict(model="ours", scheme="learned", attn="eager"),
               "ours sdpa alibi": dict(model="ours", scheme="alibi")}
    prefill = [dict(base, **spec, workload="prefill", seq=seq)
               for spec in scaling.values() for seq in (sizes.memory_seq, 4 * sizes.memory_seq)]
    peaks = peak_memory(train + prefill, device)
    gpt2_train, ours_train, prefill_peaks = peaks[0], peaks[1 : len(train)], peaks[len(train) :]

    rows = [dict(name="peak memory train", scheme=scheme, unit="MiB", a="gpt2", b="ours", a_value=gpt2_train,
                 b_value=ours, ratio=ours / gpt2_train) for scheme, ours in zip(args.schemes, ours_train)]
    for i, label in enumerate(scaling):
        at_t, at_4t = prefill_peaks[2 * i : 2 * i + 2]
        rows.append(dict(name="prefill memory 4T / T", scheme=label, unit="MiB", a=f"T={sizes.memory_seq}",
                         b=f"4T={4 * sizes.memory_seq}", a_value=at_t, b_value=at_4t, ratio=at_4t / at_t))
    return rows


def bias_memory_rows(args, sizes, device):
    """The prefill's peak memory at T and 4T for each scheme that biases the scores, under sdpa (which takes the bias
    as a [batch, heads, T, T] tensor) and flex_attention (which reads a bias of the distance alone from a [heads, T]
    table inside its kernel), against sdpa without a bias. Each case in a fresh process of its own: flex compiles
    its kernel for the first call there, which is not the one measured."""
    base = dict(sizes=dataclasses.asdict(sizes), device=device, dtype=args.dtype, model="ours", workload="prefill")
    cases = {"none sdpa (no bias)": dict(scheme="none", attn="sdpa")}
    for scheme in args.schemes:
        if SCORE_BIAS in POSITION_SCHEMES[scheme].contributes():
            cases.update({f"{scheme} {attn}": dict(scheme=scheme, attn=attn) for attn in ("sdpa", "flex_attention")})
    rows = []
    for label, spec in cases.items():
        at_t, at_4t = (peak_memory([dict(base, **spec, seq=seq)], device)[0]
                       for seq in (sizes.memory_seq, 4 * sizes.memory_seq))
        rows.append(dict(name="prefill memory 4T / T", scheme=label, unit="MiB", a=f"T={sizes.memory_seq}",
                         b=f"4T={4 * sizes.memory_seq}", a_value=at_t, b_value=at_4t, ratio=at_4t / at_t))
    return rows


def judge(rows, targets):
    """Attach the row's target (if any) to each row, and whether it is met."""
    for row in rows:
        target = targets.get((row["name"], row["scheme"]))
        if target is None:
            continue
        met = row["ratio"] <= target["ratio"] if row["unit"] == "MiB" else row["ratio"] >= target["ratio"]
        met = met and row.get("mfu_ours", 1) >= target.get("mfu", 0) and row["b_value"] >= target.get("tokens", 0)
        row["target"], row["met"] = target, met


def target_text(row):
    bounds = [f"{'<=' if row['unit'] == 'MiB' else '>='} {row['target']['ratio']:.2f}x"]
    if "mfu" in row["target"]:
        bounds.append(f"MFU >= {100 * row['target']['mfu']:.0f}%")
    if "tokens" in row["target"]:
        bounds.append(f">= {row['target']['tokens']} tok/s")
    return f"{', '.join(bounds)}: {'met' if row['met'] else '**not met**'}"


def print_table(rows, correctness):
    """A Markdown table (benchmarks/RESULTS.md holds one as printed)."""
    print("| row | scheme | A | B | unit | B/A | p10-p90 | target |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        spread_text = f"{row['p10']:.2f}-{row['p90']:.2f}" if "p10" in row else ""
        target = target_text(row) if "target" in row else ""
        if "mfu_ours" in row:
            target += f" (MFU gpt2 {100 * row['mfu_gpt2']:.1f}%, ours {100 * row['mfu_ours']:.1f}%)"
        print(f"| {row['name']} | {row['scheme']} | {row['a']} {row['a_value']:.1f} | {row['b']} {row['b_value']:.1f} "
              f"| {row['unit']} | {row['ratio']:.3f} | {spread_text} | {target} |")
    if correctness is None:
        return
    print(f"\nConverted pair: loss gpt2 {correctness['loss_gpt2']:.6f}, ours {correctness['loss_ours']:.6f} "
          f"(|difference| {correctness['loss_difference']:.1e}, equal: {correctness['losses_equal']}); "
          f"greedy tokens identical: {correctness['greedy_tokens_identical']}.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=list(DTYPES))
    parser.add_argument("--compile", action="store_true", help="torch.compile training, and static-cache decoding")
    parser.add_argument("--quick", action="store_true", help="a tiny model and few pairs: a smoke test")
    parser.add_argument("--schemes", default="all", help="comma-separated position schemes (default: all)")
    parser.add_argument("--pairs", type=int, help="timed A/B pairs per row (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU (default 2)")
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS, help="for MFU (default: H100/H200 bf16)")
    parser.add_argument("--json", help="also write the rows and the setup to this file")
    parser.add_argument("--bias-memory", action="store_true",
                        help="only the prefill memory of the score-bias schemes, sdpa against flex_attention")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_worker:  # a fresh process measuring one peak, for `peak_memory`
        torch.set_num_threads(args.threads)
        print(json.dumps([_peak_memory_here(spec) for spec in json.loads(args.memory_worker)]))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    args.schemes = ["learned", *OTHER_SCHEMES] if args.schemes == "all" else args.schemes.split(",")
    unknown = set(args.schemes) - set(POSITION_EMBEDDING_TYPES)
    if unknown:
        parser.error(f"--schemes: unknown {sorted(unknown)}; choose from {', '.join(POSITION_EMBEDDING_TYPES)}")
    preset = "quick" if args.quick else args.device
    sizes = PRESETS[preset]
    if args.pairs:
        sizes = dataclasses.replace(sizes, pairs=args.pairs)
    torch.set_num_threads(args.threads)

    setup = dict(command=" ".join([os.path.basename(sys.executable), *sys.argv]), preset=preset,
                 sizes=dataclasses.asdict(sizes), device=args.device, dtype=args.dtype, compile=args.compile,
                 threads=torch.get_num_threads(), torch=torch.__version__, transformers=transformers.__version__,
                 python=platform.python_version(), machine=hardware(), load_before=os.getloadavg())
    print(json.dumps(setup), file=sys.stderr)
    if args.bias_memory:
        rows, correctness = bias_memory_rows(args, sizes, args.device), None
    else:
        rows, correctness = benchmark(args, sizes, args.device, DTYPES[args.dtype])
    # The CPU targets are for eager models, its GPU targets for compiled ones.
    judge(rows, TARGETS.get(preset, {}) if (preset == "cuda") == args.compile else {})
    setup["load_after"] = os.getloadavg()
    print_table(rows, correctness)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(setup=setup, correctness=correctness, rows=rows), out, indent=1)


if __name__ == "__main__":
    main()
