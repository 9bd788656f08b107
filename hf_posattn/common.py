"""The small helpers every tool shares: notices on stderr, the name of the machine, progress bars on or off, what a
command stopped by Ctrl-C raises, and how a message names an option to whoever reads it.

stdout is for results (which may be JSON); progress and notices go to stderr.
"""

import contextlib
import contextvars
import platform
import sys

# What a model writes unless told otherwise: `generate_text`, `posattn generate`, the generation config of a run.
MAX_NEW_TOKENS = 200


def notice(text: str) -> None:
    """Progress and notices go to stderr: stdout is for results (which may be JSON)."""
    print(text, file=sys.stderr, flush=True)


# ---- the caller's language ----

# Whether the work under way runs for the command line (`on_command_line`), whose messages name options as its flags;
# any other caller is Python, whose messages name them as its arguments.
_COMMAND_LINE = contextvars.ContextVar("command_line", default=False)
# The flags that are not the option's name with dashes.
FLAGS = {"gradient_accumulation_steps": "--grad-accum", "wait": "--no-wait", "slurm": "--slurm"}


@contextlib.contextmanager
def on_command_line():
    """The block runs a command of the command line: `option` names options as flags in its messages."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(name: str, value=None) -> str:
    """Option `name` (a field of `TrainingOptions` or `CompareOptions`), with `value` if given, as the caller gives
    it: `--seq-len 16` on the command line, `seq_len=16` from Python; a flag that takes no value (`value` True) is
    `--resume` there, `resume=True` here. The one place a message learns how to name an option."""
    if not _COMMAND_LINE.get():
        return name if value is None else f"{name}={value!r}"
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is None or value is True or (value is False and flag.startswith("--no-")):
        return flag
    return f"{flag} {' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"


class Interrupted(Exception):
    """Ctrl-C stopped a command that kept what it had done; the message says how to continue (the command line
    prints it, with exit status 130)."""


class Failed(Exception):
    """A command could not do all it was asked, and its message says what failed, what stays and what to do (the
    command line prints it, with exit status 1, without a traceback)."""


def hardware(processes: int = 1, device=None) -> str:
    """What a run (or a timing) ran on, for its records: the GPU(s), else the CPU's model name and torch's thread
    count. `device`: the one device a timing ran on (None: what the machine offers)."""
    import torch

    device = None if device is None else torch.device(device)
    if device is not None and device.type == "mps":
        return "GPU: Apple (MPS)"
    if device is not None and device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device is None and torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    if processes > 1:
        return f"{processes} processes, each on {hardware()}"
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"CPU: {model}, {threads} thread{'s' if threads > 1 else ''}"


@contextlib.contextmanager
def progress_bars(enabled: bool):
    """Turn the progress bars of datasets and transformers off for a quiet run, and back on after it."""
    import datasets
    from transformers.utils import logging as transformers_logging

    was_enabled = datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled[0]:
            datasets.enable_progress_bars()
        if was_enabled[1]:
            transformers_logging.enable_progress_bar()
