"""What the Trainer is told besides its arguments: stop cleanly on Ctrl-C, at the last step of a resumed run, and
before a NaN reaches a checkpoint; give saved files their normal modes.
"""

import math
import os
import signal
import threading

import torch
from transformers import (
    TrainerCallback,
)

from ..files import normal_modes


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
        print("\nCtrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again to stop at once).",
              flush=True)

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
