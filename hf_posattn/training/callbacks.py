"""What the Trainer is told besides its arguments: show its logs as short lines (not Python dicts); stop cleanly on
Ctrl-C, at the last step of a resumed run, and before a NaN reaches a checkpoint; give saved files their normal
modes.
"""

import math
import os
import signal
import sys
import threading
import time

import torch
from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from ..common import notice
from ..files import normal_modes, write_json
from ..runfolder import PROGRESS_FILE


def show_logs_as_lines(trainer, quiet: bool, validation_blocks: tuple[int, int] = (0, 0)) -> None:
    """The Trainer prints each log as a Python dict on stdout (`PrinterCallback`, or `ProgressCallback` above its
    bars): replace that with `LogLines` on stderr, keeping the progress bars; a quiet run shows neither (its
    arguments turn the bars off). `validation_blocks`: (scored during training, in all), for the lines to say."""
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressBars())
    if not quiet:
        trainer.add_callback(LogLines(*validation_blocks))


class ProgressBars(ProgressCallback):
    """The Trainer's progress bars, without its printing of every log (`LogLines` shows them)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def perplexity(loss: float) -> float:
    return math.inf if loss > 700 else math.exp(loss)  # exp overflows past ~709; NaN stays NaN


class LogLines(TrainerCallback):
    """The Trainer's logs as short aligned lines on stderr, above its progress bars: about `LINES` of training per
    run (step, training loss, learning rate, tokens per second of training since the line before) and one per
    evaluation (validation loss and perplexity, and what they were measured on). Evaluations during training score
    `periodic` of the `blocks` validation blocks, evenly spread (quicker; `run.PERIODIC_EVAL_BLOCKS`); the last one,
    after training, scores all of them: the run's result, which its card and run file record. The two differ a
    little when `periodic < blocks`, as two samples of the same text do.

        step  100/1200  training loss   5.8123  learning rate 2.00e-03   8,123 tokens/s
        step  240/1200  validation loss 5.0123  perplexity 150.93  (256 of 912 validation blocks)
        step 1200/1200  validation loss 4.2764  perplexity 71.96  (all 912 validation blocks: the result)
    """

    LINES = 10

    def __init__(self, periodic: int = 0, blocks: int = 0):
        self.periodic, self.blocks = periodic, blocks
        self.every, self.width, self.training = 1, 1, False
        self.tokens, self.seconds, self.step_started = 0, 0.0, None

    def on_train_begin(self, args, state, control, **kwargs):
        logs = max(1, state.max_steps // args.logging_steps)  # training logs in the run
        self.every = args.logging_steps * max(1, round(logs / self.LINES))
        self.width, self.training = len(str(state.max_steps)), True
        self.tokens, self.seconds = state.num_input_tokens_seen, 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.step_started is not None:
            self.seconds += time.perf_counter() - self.step_started

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = self.evaluation(logs) if "eval_loss" in logs else self.training_line(logs, state)
        if line is not None:
            tqdm.write(f"step {state.global_step:>{self.width}}/{state.max_steps}  {line}", file=sys.stderr)

    def evaluation(self, logs: dict) -> str:
        loss = logs["eval_loss"]
        if not self.training:
            scored = f"all {self.blocks:,} validation blocks: the result"
        elif self.periodic < self.blocks:
            scored = f"{self.periodic:,} of {self.blocks:,} validation blocks"
        else:
            scored = f"all {self.blocks:,} validation blocks"
        return f"validation loss {loss:.4f}  perplexity {perplexity(loss):.2f}  ({scored})"

    def training_line(self, logs: dict, state) -> str | None:
        if "loss" not in logs or (state.global_step % self.every and state.global_step != state.max_steps):
            return None
        line = f"training loss   {logs['loss']:.4f}"
        if "learning_rate" in logs:
            line += f"  learning rate {logs['learning_rate']:.2e}"
        tokens = state.num_input_tokens_seen - self.tokens
        if tokens > 0 and self.seconds > 0:
            line += f"  {tokens / self.seconds:>9,.0f} tokens/s"
        self.tokens, self.seconds = state.num_input_tokens_seen, 0.0
        return line


class ProgressFile(TrainerCallback):
    """Where training is, in the run's folder (`PROGRESS_FILE`), rewritten whole at every log: step, steps, the last
    training loss, seconds of this call's training and an estimate of the seconds left. Whatever waits for the run
    (a study's progress lines, a user's `cat`) reads it, in this process, another one or a Slurm job alike."""

    def __init__(self):
        self.started, self.first_step, self.loss = None, 0, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.started is None:
            return
        self.loss = (logs or {}).get("loss", self.loss)
        seconds = time.perf_counter() - self.started
        done = state.global_step - self.first_step
        left = (state.max_steps - state.global_step) * seconds / done if done > 0 else None
        write_json(os.path.join(args.output_dir, PROGRESS_FILE),
                   {"step": state.global_step, "max_steps": state.max_steps, "loss": self.loss,
                    "seconds": seconds, "seconds_left": left})


class StopOnCtrlC(TrainerCallback):
    """The first Ctrl-C lets the current step finish, saves a checkpoint and stops training; a second one stops at
    once (the last periodic checkpoint stays)."""

    def __init__(self):
        self.interrupted = False
        self.previous_handler = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            self.previous_handler = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        if self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)

    def handle(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        notice("\nCtrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again to stop at once).")

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupted:
            control.should_save = True
            control.should_training_stop = True


class NothingLeftToTrain(Exception):
    pass


class StopAtMaxSteps(TrainerCallback):
    """The Trainer compares the step with max_steps after each step only: resumed from a checkpoint at max_steps
    (a run killed after its last checkpoint) it would train one step more than the run it continues. Stops it
    before that step, with the checkpoint's weights and state loaded."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            raise NothingLeftToTrain


class NormalModes(TrainerCallback):
    """A checkpoint's files get the mode an ordinary open() gives, as every other file of the run (safetensors
    writes its weights 0600)."""

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            normal_modes(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))


class StopOnNonFinite(TrainerCallback):
    """Stops a run whose loss or weights became NaN or infinite, before they reach a checkpoint: the weights are
    checked whenever a step is about to be logged or saved, the loss whenever it is logged. `found` says what and
    when."""

    def __init__(self):
        self.found: tuple[int, str] | None = None

    def stop(self, state, control, what: str):
        self.found = self.found or (state.global_step, what)
        control.should_save = control.should_evaluate = False
        control.should_training_stop = True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if (control.should_save or control.should_log) and model is not None:
            finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
            if not bool(finite):
                self.stop(state, control, "the weights became NaN or infinite")

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.stop(state, control, f"the training loss became {loss}")
