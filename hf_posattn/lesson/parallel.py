"""The lesson, part 3: why attention beat recurrent networks. One layer of self-attention against a GRU of the same
width, timed on this machine at growing lengths: attention computes all T positions in one batch of matrix
products, the GRU in T steps that each wait for the one before, and attention pays for it with work and memory that
grow as T².
"""

import contextlib
import math
import statistics
import time

import torch

from ..common import hardware
from ..model.configuration_posattn import PosAttnConfig
from ..model.modeling_posattn import PosAttnAttention

DEFAULT_LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)


# Sized so that the whole default run takes about a minute on 2 CPU cores; a GPU does it in seconds.
DEFAULT_HIDDEN, DEFAULT_BATCH, DEFAULT_REPEATS = 256, 4, 7


BACKENDS = ("sdpa", "eager")  # flex_attention compiles a kernel per shape and runs no backward on CPU
DEFAULT_BACKEND = BACKENDS[0]
DEVICE_TYPES = ("cpu", "cuda", "mps")
DEFAULT_DEVICE = "cpu"  # the device every reader has; --device cuda times a GPU


HEAD_DIM = 64  # the default number of heads is hidden // HEAD_DIM, as in GPT-2 and BERT


FLOAT_BYTES = 4  # everything runs in float32; the eager backend keeps its scores in float32 in any case


# The eager backend holds the scores, their scaled (and masked) copy and the softmax weights at once: about three
# score matrices, plus the T x T mask.
EAGER_SCORE_COPIES = 3


def is_power_of_two(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value & (value - 1) == 0


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def resolve_device(name: str) -> torch.device:
    """`name` as a torch device that exists on this machine, or a ValueError that says what does."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use one of {', '.join(DEVICE_TYPES)} (e.g. cuda:0).") from None
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"device {name!r} is not supported here: use one of {', '.join(DEVICE_TYPES)}.")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r} asked for, but this machine has no CUDA GPU that torch can use: "
                             f"use --device cpu.")
        if (device.index or 0) >= count:
            raise ValueError(f"device {name!r} asked for, but this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no Apple GPU (MPS): use --device cpu.")
    return device


def available_bytes(device: torch.device) -> int | None:
    """Free memory where the tensors will live, or None when it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
        except (OSError, StopIteration, ValueError):
            return None
    return None


def check_options(lengths, hidden: int, heads: int, batch: int, repeats: int, device: str, attn_implementation: str,
                  backward: bool, threads: int | None = None) -> tuple[list[int], torch.device]:
    """Every option checked before anything runs: the sorted lengths and the device, or a ValueError naming what is
    wrong and how to fix it."""
    lengths = list(lengths)
    if not lengths:
        raise ValueError("give at least one sequence length, e.g. 64,128,256.")
    bad = [length for length in lengths if not is_power_of_two(length)]
    if bad:
        raise ValueError(f"sequence lengths must be powers of two (1, 2, 4, ..., 64, 128, ...): got "
                         f"{', '.join(map(repr, bad))}.")
    for name, value in (("hidden", hidden), ("heads", heads), ("batch", batch), ("repeats", repeats)):
        check_positive(name, value)
    if threads is not None:
        check_positive("threads", threads)
    if hidden % heads:
        raise ValueError(f"hidden = {hidden} is not a multiple of heads = {heads}: every head takes hidden / heads "
                         f"features. Choose e.g. heads = {math.gcd(hidden, max(1, hidden // HEAD_DIM))}.")
    if attn_implementation not in BACKENDS:
        raise ValueError(f"attention backend {attn_implementation!r} is not one this demo times: use one of "
                         f"{', '.join(BACKENDS)}.")
    resolved = resolve_device(device)
    free = available_bytes(resolved)
    need = memory_needed(max(lengths), batch, hidden, heads, attn_implementation, backward)
    if free is not None and need > free:
        raise ValueError(f"at length {max(lengths)} this needs about {need / 2**30:.1f} GiB, but {resolved} has "
                         f"{free / 2**30:.1f} GiB free: give shorter --lengths or a smaller --batch"
                         + (", or use --attn-implementation sdpa (whose fused kernels do not keep the T x T scores)."
                            if attn_implementation == "eager" else "."))
    return sorted(set(lengths)), resolved


def memory_needed(length: int, batch: int, hidden: int, heads: int, attn_implementation: str, backward: bool) -> int:
    """A lower estimate of the bytes one length takes: the tensors of batch x T x hidden floats that are alive at
    once (the input, q, k and v, attention's output and its projection, the GRU's output and gates: about 12), and
    for the eager backend its score matrices (about 3, and the T x T mask). The backward about doubles it."""
    need = 12 * batch * length * hidden * FLOAT_BYTES
    if attn_implementation == "eager":
        need += EAGER_SCORE_COPIES * score_bytes(length, batch, heads) + length * length * FLOAT_BYTES
    return need * (2 if backward else 1)


def attention_flops(length: int, batch: int, hidden: int, backward: bool = False) -> int:
    """Multiply-adds x 2 of one causal attention layer: the q, k, v and output projections (8·T·H²) and the two
    products over the (query, key) pairs a causal layer needs, about half of the T² (scores and the weighted sum of
    values: 2·T²·H). Kernels that skip the masked half (sdpa's) do this much; eager computes the whole T x T and
    so reaches twice the FLOP/s counted here. A backward costs about twice the forward."""
    forward = batch * (8 * length * hidden**2 + 2 * length**2 * hidden)
    return forward * (3 if backward else 1)


def rnn_flops(length: int, batch: int, hidden: int, backward: bool = False) -> int:
    """Multiply-adds x 2 of one GRU layer: three gates, each a product with the input and one with the state
    (12·T·H²)."""
    forward = batch * 12 * length * hidden**2
    return forward * (3 if backward else 1)


def score_bytes(length: int, batch: int, heads: int) -> int:
    """The attention score matrix: one T x T matrix per head and sequence (float32). sdpa's fused kernels compute
    it in tiles without keeping it whole, but compute every entry all the same."""
    return batch * heads * length**2 * FLOAT_BYTES


def rnn_state_bytes(batch: int, hidden: int) -> int:
    """The GRU's state, the only thing that carries the past from one step to the next, whatever the length."""
    return batch * hidden * FLOAT_BYTES


def crossings(lengths, attention, rnn) -> list[tuple[float, bool]]:
    """Where the cheaper of the two changes, interpolated on log axes: (length, whether attention is the costlier
    one after it), in order. Both lists follow `lengths`."""
    gaps = [math.log(a / r) for a, r in zip(attention, rnn)]  # > 0: attention costs more
    found = []
    for t0, t1, gap0, gap1 in zip(lengths, lengths[1:], gaps, gaps[1:]):
        if (gap0 >= 0) != (gap1 >= 0):
            found.append((math.exp(math.log(t0) + (math.log(t1) - math.log(t0)) * gap0 / (gap0 - gap1)), gap1 >= 0))
    return found


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """torch's CPU threads set to `threads` inside (None: left as they are), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_ms(runs: dict, device: torch.device, repeats: int) -> dict:
    """Median wall time in ms of each of `runs` ({name: function}) over `repeats` calls, after one warm-up call
    each (which pays for kernel choice, allocation and caches), waiting for the GPU before and after each call. The
    calls take turns, so that a change in the machine's load (other programs) falls on all of them alike."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def step(module, inputs: torch.Tensor, backward: bool):
    """One call of `module` as timed: the forward only (under no_grad), or forward and backward (the gradients of
    the weights and of the input, as inside a deeper network)."""
    if not backward:
        def forward_only():
            with torch.no_grad():
                module(inputs)
        return forward_only
    parameters = [*module.parameters(), inputs]

    def forward_backward():
        torch.autograd.grad(module(inputs)[0].float().sum(), parameters)
    return forward_backward


class CausalAttention(torch.nn.Module):
    """The model's attention layer with the causal mask the model would build for a batch without padding (None for
    sdpa, which then masks inside its kernel; a T x T additive mask for eager), made once per length, outside the
    timed call."""

    def __init__(self, attention: PosAttnAttention, length: int, device: torch.device):
        super().__init__()
        from transformers.masking_utils import create_causal_mask

        self.attention = attention
        config = attention.config
        example = torch.empty(1, length, config.hidden_size, device=device)
        self.mask = create_causal_mask(config=config, inputs_embeds=example, attention_mask=None, cache=None,
                                       position_ids=torch.arange(length, device=device)[None])

    def forward(self, hidden_states):
        return self.attention(hidden_states, attention_mask=self.mask)


def peak_attention_bytes(attention, inputs, backward: bool, device: torch.device) -> int | None:
    """Peak memory one attention call allocates beyond what was held before it (CUDA only: the CPU allocator keeps
    no such count)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step(attention, inputs, backward)()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def default_heads(hidden: int) -> int:
    return max(1, hidden // HEAD_DIM)


def measure(lengths=DEFAULT_LENGTHS, hidden: int = DEFAULT_HIDDEN, heads: int | None = None,
            batch: int = DEFAULT_BATCH, repeats: int = DEFAULT_REPEATS, device: str = DEFAULT_DEVICE,
            attn_implementation: str = DEFAULT_BACKEND, backward: bool = False, threads: int | None = None, seed: int = 0,
            progress=None) -> list[dict]:
    """Time one attention layer and one GRU layer of width `hidden` on the same random batch at each length; one
    row (a dict) per length. `heads` defaults to hidden // 64 (at least 1); `threads` (CPU threads) to torch's
    setting. `progress(row)` is called as each row is done."""
    heads = default_heads(hidden) if heads is None else heads
    lengths, device = check_options(lengths, hidden, heads, batch, repeats, device, attn_implementation, backward,
                                    threads)
    with cpu_threads(threads):
        return timed_rows(lengths, hidden, heads, batch, repeats, device, attn_implementation, backward, seed,
                          progress)


def timed_rows(lengths, hidden, heads, batch, repeats, device, attn_implementation, backward, seed, progress):
    """`measure`'s work, once its options are checked and its threads set."""
    torch.manual_seed(seed)
    config = PosAttnConfig(hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=1,
                           intermediate_size=4 * hidden, position_embedding_type="none", hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
    config._attn_implementation = attn_implementation
    attention_layer = PosAttnAttention(config, layer_idx=0).to(device).eval()
    rnn = torch.nn.GRU(hidden, hidden, batch_first=True).to(device).eval()
    rows = []
    for length in lengths:
        inputs = torch.randn(batch, length, hidden, device=device, requires_grad=backward)
        attention = CausalAttention(attention_layer, length, device)
        medians = median_ms({"attention": step(attention, inputs, backward), "rnn": step(rnn, inputs, backward)},
                            device, repeats)
        attention_ms, rnn_ms = medians["attention"], medians["rnn"]
        peak = peak_attention_bytes(attention, inputs, backward, device)
        row = {
            "length": length,
            "attention_ms": attention_ms,
            "rnn_ms": rnn_ms,
            "rnn_over_attention": rnn_ms / attention_ms,
            "attention_gflop_per_s": attention_flops(length, batch, hidden, backward) / attention_ms / 1e6,
            "rnn_gflop_per_s": rnn_flops(length, batch, hidden, backward) / rnn_ms / 1e6,
            "score_matrix_mb": score_bytes(length, batch, heads) / 2**20,
            "rnn_state_kb": rnn_state_bytes(batch, hidden) / 2**10,
            "attention_peak_mb": None if peak is None else peak / 2**20,
            "attention_sequential_steps": 1,
            "rnn_sequential_steps": length,
        }
        rows.append(row)
        if progress:
            progress(row)
    return rows


COLUMNS = (  # (header, row key, format)
    ("length T", "length", "{:>8d}"),
    ("attention ms", "attention_ms", "{:>12.2f}"),
    ("RNN ms", "rnn_ms", "{:>10.2f}"),
    ("RNN/attn", "rnn_over_attention", "{:>8.1f}x"),
    ("attn GFLOP/s", "attention_gflop_per_s", "{:>12.1f}"),
    ("RNN GFLOP/s", "rnn_gflop_per_s", "{:>11.1f}"),
    ("T² scores MB", "score_matrix_mb", "{:>12.1f}"),
    ("RNN state KB", "rnn_state_kb", "{:>12.1f}"),
    ("RNN steps", "rnn_sequential_steps", "{:>9d}"),
)


PEAK_COLUMN = ("attn peak MB", "attention_peak_mb", "{:>12.1f}")


def table_columns(device: torch.device) -> tuple:
    """The table's columns: the measured peak memory only where it is measured (CUDA)."""
    return COLUMNS + ((PEAK_COLUMN,) if device.type == "cuda" else ())


def header_line(columns) -> str:
    widths = [len(fmt.format(0 if "d}" in fmt else 0.0)) for _, _, fmt in columns]
    return "  ".join(f"{name:>{width}}" for (name, _, _), width in zip(columns, widths))


def row_line(row: dict, columns) -> str:
    return "  ".join(fmt.format(row[key]) for _, key, fmt in columns)


def parallel_demo(output: str = "parallel.png", lengths=DEFAULT_LENGTHS, hidden: int = DEFAULT_HIDDEN,
                  heads: int | None = None, batch: int = DEFAULT_BATCH, repeats: int = DEFAULT_REPEATS,
                  device: str = DEFAULT_DEVICE, attn_implementation: str = DEFAULT_BACKEND, backward: bool = False,
                  threads: int | None = None) -> list[dict]:
    """Time, print the table, draw the figure at `output`; returns the rows (see `measure`)."""
    from ..figures.common import pyplot
    from ..runfolder import check_output_file

    pyplot()  # no matplotlib, or nowhere to write: say so now, not after the timings
    check_output_file(output, example="parallel.png")
    heads = default_heads(hidden) if heads is None else heads
    lengths, resolved = check_options(lengths, hidden, heads, batch, repeats, device, attn_implementation, backward,
                                      threads)
    with cpu_threads(threads):  # the machine's line names the threads used
        return report(output, lengths, hidden, heads, batch, repeats, resolved, attn_implementation, backward)


def report(output, lengths, hidden, heads, batch, repeats, resolved, attn_implementation, backward) -> list[dict]:
    """`parallel_demo`'s work, once its options are checked and its threads set."""
    what = "forward + backward" if backward else "forward"
    print(f"One layer of hf_posattn self-attention ({attn_implementation}, {heads} head{'s' * (heads > 1)}) against "
          f"one torch.nn.GRU layer, both {hidden} wide, batch {batch}, {what}; median of {repeats} after a warm-up.")
    print(f"Attention computes all T positions in one batch of matrix products; the GRU takes T steps, each waiting "
          f"for the one before.\n{hardware(device=resolved)}\n")
    columns = table_columns(resolved)
    print(header_line(columns))
    rows = measure(lengths, hidden, heads, batch, repeats, str(resolved), attn_implementation, backward,
                   progress=lambda row: print(row_line(row, columns), flush=True))
    for line in summary(rows, hidden, heads, batch, backward):
        print(line)
    from ..figures.lesson import draw  # matplotlib, only when a figure is drawn

    costs = cost_curves([row["length"] for row in rows], hidden, heads, batch, backward)
    cross = crossovers(rows, costs)
    draw(output, rows, costs, cross, time_verdict(rows, cross["time"]), hidden, heads, batch, repeats, resolved,
         attn_implementation, backward)
    print(f"wrote {output}")
    return rows


def cost_curves(lengths, hidden: int, heads: int, batch: int, backward: bool) -> dict:
    """Both models' work and memory by formula, on a fine grid of lengths from 1 to the longest timed or 4 x hidden,
    whichever is larger (so that both crossings are on it): {"work": (grid, attention, rnn), "memory": (...)}."""
    last = max(max(lengths), 4 * hidden)
    return {
        "work": curves(last, lambda t: attention_flops(t, batch, hidden, backward),
                       lambda t: rnn_flops(t, batch, hidden, backward)),
        "memory": curves(last, lambda t: score_bytes(t, batch, heads), lambda t: rnn_state_bytes(batch, hidden)),
    }


def curves(last: int, attention, rnn, points_per_octave: int = 16):
    grid = [2 ** (i / points_per_octave) for i in range(int(math.log2(last) * points_per_octave) + 1)]
    return grid, [attention(t) for t in grid], [rnn(t) for t in grid]


def crossovers(rows: list[dict], costs: dict) -> dict:
    """Where attention's cost and the GRU's cross: measured time (a list, see `crossings`: empty if one is faster at
    every length timed), and by formula where attention's arithmetic (at T = 2 x hidden) and its memory (score matrix
    against state, at T = sqrt(hidden / heads)) pass the GRU's: both on the grid of `cost_curves`."""
    lengths = [row["length"] for row in rows]
    return {"time": crossings(lengths, [row["attention_ms"] for row in rows], [row["rnn_ms"] for row in rows]),
            "work": overtakes(*costs["work"]), "memory": overtakes(*costs["memory"])}


def overtakes(lengths, attention, rnn) -> float:
    """The first length at which attention's cost reaches the GRU's (it may from the first length on); the grids of
    `cost_curves` always hold it."""
    if attention[0] >= rnn[0]:
        return lengths[0]
    return next(length for length, attention_costlier in crossings(lengths, attention, rnn) if attention_costlier)


def summary(rows: list[dict], hidden: int, heads: int, batch: int, backward: bool) -> list[str]:
    longest = rows[-1]
    cross = crossovers(rows, cost_curves([row["length"] for row in rows], hidden, heads, batch, backward))
    faster = "faster" if longest["rnn_over_attention"] >= 1 else "slower"
    factor = max(longest["rnn_over_attention"], 1 / longest["rnn_over_attention"])
    lines = [f"\nAt T = {longest['length']} attention is {factor:.1f}x {faster} than the GRU: one step of matrix "
             f"products at {longest['attention_gflop_per_s']:.1f} GFLOP/s against {longest['length']} steps in a row "
             f"at {longest['rnn_gflop_per_s']:.1f} GFLOP/s."]
    lines.append(f"Time: {time_verdict(rows, cross['time'])}, on this machine.")
    lines.append(f"The other side: attention's work grows as T² (2·T²·H for the causal scores and the weighted sum) "
                 f"and passes the GRU's 12·T·H² at T ≈ {cross['work']:.0f} (= 2 x hidden); its score matrix "
                 f"(batch·heads·T² floats) outgrows the GRU's state (batch·hidden floats, whatever T) at "
                 f"T ≈ {cross['memory']:.0f}, and at T = {longest['length']} is {longest['score_matrix_mb']:.1f} MB "
                 f"against {longest['rnn_state_kb']:.1f} KB.")
    return lines


def time_verdict(rows: list[dict], time_crossings: list) -> str:
    """Which is faster where, in words. Several crossings mean times too close to tell apart on a noisy machine:
    the last one says who wins at length."""
    if not time_crossings:
        faster = "attention" if rows[0]["attention_ms"] < rows[0]["rnn_ms"] else "the GRU"
        return f"{faster} is faster at every length timed"
    length, attention_slower = time_crossings[-1]
    last = f"{'the GRU' if attention_slower else 'attention'} is faster from T ≈ {length:.0f}"
    if len(time_crossings) == 1:
        return last
    return (f"close from T ≈ {time_crossings[0][0]:.0f} (they cross {len(time_crossings)} times); {last}")
