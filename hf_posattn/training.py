"""Train an hf_posattn language model from scratch with the Hugging Face `Trainer`.

    from hf_posattn.training import TrainingOptions, train
    result = train(TrainingOptions(position="alibi", output_dir="runs/alibi"))
    print(result.perplexity, result.unigram_perplexity)

One call does the whole job: text (the embedded corpus by default), a byte-level BPE tokenizer, packed blocks of
`seq_len` tokens, the model of a preset, the `Trainer` (AdamW, warm-up then cosine decay, periodic evaluation,
checkpoints, bf16/fp16 on GPUs that support it), then the final model, tokenizer, code and model card saved in
`output_dir`, the validation perplexity next to the unigram baseline, and a sample. The same options with the same
seed train the same model, so runs that differ only in `position` compare the position schemes.
"""

import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from datasets import DatasetDict
from transformers import (
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint, sort_checkpoints
from transformers.utils import logging as transformers_logging

from . import PosAttnConfig, PosAttnForCausalLM
from .configuration_posattn import POSITION_EMBEDDING_TYPES
from .corpus import CORPUS_NAME, load_texts
from .evaluation import EVAL_BATCH_TOKENS, unigram_baseline
from .generation import generate_text
from .model_card import write_model_card
from .tokenization import encode_documents, has_tokenizer, split_blocks, train_tokenizer


RUN_FILE = "posattn_run.json"  # the options a run was started with (read by --resume), and its results


@dataclass(frozen=True)
class Preset:
    """A model size and the training budget that suits it."""

    description: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    max_position_embeddings: int
    dropout: float
    vocab_size: int
    seq_len: int
    batch_size: int
    max_steps: int
    learning_rate: float
    warmup_steps: int
    adam_beta2: float


PRESETS = {
    # The default: sized so that `posattn train` ends within 10 minutes on 2 CPU cores, about 1.5 passes over the
    # embedded corpus. No dropout: a model that sees most text once or twice does not overfit, and dropout only
    # slows it down.
    "tiny": Preset("4 layers, 256 wide, 4 heads, 4k-token vocabulary: 4.2M parameters; CPU minutes",
                   num_hidden_layers=4, hidden_size=256, num_attention_heads=4, max_position_embeddings=1024,
                   dropout=0.0, vocab_size=4096, seq_len=128, batch_size=16, max_steps=1200, learning_rate=2e-3,
                   warmup_steps=100, adam_beta2=0.99),
    # nanoGPT's Shakespeare model size, over BPE tokens: many passes over the corpus, so dropout regularises.
    "small": Preset("6 layers, 384 wide, 6 heads, 8k-token vocabulary: 14M parameters; GPU minutes, CPU hours",
                    num_hidden_layers=6, hidden_size=384, num_attention_heads=6, max_position_embeddings=1024,
                    dropout=0.1, vocab_size=8192, seq_len=256, batch_size=32, max_steps=5000, learning_rate=1e-3,
                    warmup_steps=200, adam_beta2=0.99),
    # GPT-2 small's dimensions: 124M parameters with GPT-2's 50,257-token vocabulary (fewer when the text cannot
    # fill it). For a GPU and a larger --data; on the embedded corpus alone it overfits.
    "gpt2-124m": Preset("12 layers, 768 wide, 12 heads, 50k-token vocabulary, 1024 positions: GPT-2 small, 124M "
                        "parameters; a GPU and a larger --data",
                        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, max_position_embeddings=1024,
                        dropout=0.0, vocab_size=50257, seq_len=1024, batch_size=16, max_steps=10000,
                        learning_rate=6e-4, warmup_steps=500, adam_beta2=0.95),
}

# Evaluation during training uses at most this many validation blocks, evenly spread (all of them at the end).
PERIODIC_EVAL_BLOCKS = 256


@dataclass
class TrainingOptions:
    """What to train. `None` means the default: the preset's value, or the one named in the comment."""

    output_dir: str | None = None  # runs/posattn-{preset}-{position}
    position: str | None = None  # "sinusoidal"
    preset: str | None = None  # "tiny"
    data: list[str] | None = None  # the embedded corpus; else text files, or one `datasets` dataset (name or path)
    text_column: str | None = None  # "text"
    seq_len: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None  # 1
    learning_rate: float | None = None
    vocab_size: int | None = None
    tokenizer: str | None = None  # a folder with a tokenizer to reuse instead of training one
    seed: int | None = None  # 0
    eval_steps: int | None = None  # 5 evaluations per run
    save_steps: int | None = None  # a checkpoint with every evaluation
    resume: bool = False  # continue the run in output_dir from its last checkpoint
    overwrite: bool = False  # replace the run in output_dir
    sample_prompt: str | None = None  # the first speaker's cue (or first line) of the validation text
    quiet: bool = False  # no progress bar or logs


DEFAULTS = {"position": "sinusoidal", "preset": "tiny", "text_column": "text", "gradient_accumulation_steps": 1,
            "seed": 0}

# Options that must be the same to continue a run: the others (steps, evaluation, prompt) may change on resume.
RUN_IDENTITY = ("position", "preset", "data", "text_column", "seq_len", "batch_size", "gradient_accumulation_steps",
                "learning_rate", "vocab_size", "tokenizer", "seed")


@dataclass
class TrainingResult:
    output_dir: str
    eval_loss: float  # mean cross-entropy per token on the whole validation split, in nats
    perplexity: float
    unigram_loss: float
    unigram_perplexity: float
    steps: int
    tokens_seen: int
    train_seconds: float  # the Trainer's training loop (of this call only, when it resumed a run)
    wall_seconds: float  # the whole call: data, tokenizer, training, evaluation, saving, sample
    hardware: str
    parameters: int
    sample: str
    options: dict = field(default_factory=dict)  # resolved: every None replaced by what was used

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training; the checkpoint it saved stays, and `resume=True` continues from it."""

    def __init__(self, output_dir: str, checkpoint: str | None):
        self.output_dir, self.checkpoint = output_dir, checkpoint
        where = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been saved yet"
        super().__init__(f"training interrupted: {where}. Continue with --resume (resume=True) "
                         f"and the same --output-dir {output_dir}.")


def resolve(options: TrainingOptions) -> TrainingOptions:
    """The options with every default filled in from the preset; checks what can be checked before any work."""
    options = dataclasses.replace(
        options, **{name: value for name, value in DEFAULTS.items() if getattr(options, name) is None})
    if options.preset not in PRESETS:
        raise ValueError(f"unknown preset {options.preset!r}: choose one of {', '.join(PRESETS)}.")
    if options.position not in POSITION_EMBEDDING_TYPES:
        raise ValueError(f"unknown position scheme {options.position!r}: choose one of "
                         f"{', '.join(POSITION_EMBEDDING_TYPES)}.")
    preset = PRESETS[options.preset]
    resolved = dataclasses.replace(
        options,
        output_dir=options.output_dir or os.path.join("runs", f"posattn-{options.preset}-{options.position}"),
        data=list(options.data) if options.data else None,
        **{name: getattr(preset, name) if getattr(options, name) is None else getattr(options, name)
           for name in ("seq_len", "max_steps", "batch_size", "learning_rate", "vocab_size")},
    )
    steps = max(1, resolved.max_steps // 5) if resolved.eval_steps is None else resolved.eval_steps
    resolved = dataclasses.replace(resolved, eval_steps=steps,
                                   save_steps=steps if resolved.save_steps is None else resolved.save_steps)
    for name in ("seq_len", "max_steps", "batch_size", "gradient_accumulation_steps", "vocab_size", "eval_steps",
                 "save_steps", "learning_rate"):
        if getattr(resolved, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(resolved, name)}.")
    if not 0 <= resolved.seed < 2**32:  # before anything is written: set_seed would refuse it only after
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {resolved.seed}.")
    if resolved.position == "learned" and resolved.seq_len > preset.max_position_embeddings:
        raise ValueError(
            f"--seq-len {resolved.seq_len} is above the {preset.max_position_embeddings} positions that learned "
            f"position embeddings have in preset {resolved.preset!r} (max_position_embeddings): use --seq-len <= "
            f"{preset.max_position_embeddings}, or a scheme that runs at any length (sinusoidal, rotary, alibi, none)."
        )
    return resolved


def model_config(options: TrainingOptions, tokenizer) -> PosAttnConfig:
    preset = PRESETS[options.preset]
    # Learned positions get exactly the preset's table; the other schemes run at any length, and their tables
    # (sinusoidal, rotary) are only a cache that should cover the training length.
    max_positions = preset.max_position_embeddings
    if options.position != "learned":
        max_positions = max(max_positions, options.seq_len)
    return PosAttnConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        intermediate_size=4 * preset.hidden_size,
        max_position_embeddings=max_positions,
        position_embedding_type=options.position,
        hidden_dropout_prob=preset.dropout,
        attention_probs_dropout_prob=preset.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def prepare_output_dir(options: TrainingOptions) -> TrainingOptions:
    """The resolved options to train with. Refuses to train over another run unless told to (`overwrite`); on
    `resume`, continues with the options the run was started with, and refuses options that differ from them."""
    if options.resume and options.overwrite:
        raise ValueError("--resume continues the run in --output-dir and --overwrite replaces it: choose one.")
    folder = resolve(options).output_dir
    run_file = os.path.join(folder, RUN_FILE)
    if options.resume:
        if not os.path.isfile(run_file):
            raise ValueError(f"--resume: {folder} holds no run of `posattn train` to continue (no {RUN_FILE}). "
                             f"Start one without --resume.")
        with open(run_file) as file:
            started = json.load(file)["options"]
        changed = [name for name in RUN_IDENTITY
                   if getattr(options, name) is not None and getattr(options, name) != started.get(name)]
        if changed:
            was = ", ".join(f"{name}={started.get(name)!r} (now {getattr(options, name)!r})" for name in changed)
            raise ValueError(f"--resume continues the run in {folder} with the options it was started with, but "
                             f"{was}. Drop those options, or start a new run in another --output-dir.")
        # What is not given now is what the run was started with (its steps too), not the preset's default.
        recorded = {name: value for name, value in started.items() if name != "output_dir" and (
            name in RUN_IDENTITY or getattr(options, name, False) is None)}
        return resolve(dataclasses.replace(options, output_dir=folder, **recorded))
    holds_run = os.path.isdir(folder) and (
        any(os.path.exists(os.path.join(folder, name)) for name in (RUN_FILE, "config.json", "model.safetensors"))
        or get_last_checkpoint(folder) is not None
    )
    if holds_run and not options.overwrite:
        raise ValueError(f"{folder} already holds a model or a training run. Pass --overwrite to replace it, "
                         f"--resume to continue its training, or choose another --output-dir.")
    return resolve(options)


def clear_run(folder: str) -> None:
    """For --overwrite, once the new run's data and tokenizer are ready: remove the old run (checkpoints, run file,
    tokenizer, model and card), so that a new run stopped before it saves a model leaves no old weights to be
    loaded with its new tokenizer."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("checkpoint-") and os.path.isdir(path):
            shutil.rmtree(path)
        elif name in (RUN_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
                      "generation_config.json", "model.safetensors", "README.md"):
            os.remove(path)


def last_complete_checkpoint(folder: str) -> str | None:
    """The last checkpoint the Trainer finished writing. It writes `trainer_state.json` last, so a run killed while
    saving leaves a checkpoint without it (or with a truncated one), whose weights or optimizer state may be missing
    or truncated: `get_last_checkpoint` would pick it, and resuming would fail or silently restart the optimizer."""
    for checkpoint in reversed(sort_checkpoints(folder)):
        try:
            TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
            return checkpoint
        except (OSError, ValueError):
            print(f"skipping {checkpoint}: it has no readable trainer_state.json (the run stopped while saving it)")
    return None


def tokenizer_for(options: TrainingOptions, train_texts):
    """The tokenizer of `--tokenizer`, else the one already in the output folder (a resumed run keeps its tokens),
    else a new one trained on the training text (always with --overwrite)."""
    if options.tokenizer and not has_tokenizer(options.tokenizer):
        raise ValueError(f"--tokenizer {options.tokenizer}: no tokenizer.json there; give a folder that holds a "
                         f"tokenizer (e.g. another run's --output-dir).")
    source = options.tokenizer or (None if options.overwrite else options.output_dir)
    if source and has_tokenizer(source):
        return AutoTokenizer.from_pretrained(source)
    return train_tokenizer(train_texts, options.vocab_size)


def pack(texts: DatasetDict, tokenizer, seq_len: int) -> DatasetDict:
    """Tokenise every document (end-of-text token after each), join them and cut the stream into blocks of
    `seq_len` tokens; the labels are the inputs (the model shifts them)."""

    def to_blocks(batch):
        stream = [token for ids in encode_documents(tokenizer, batch["text"]) for token in ids]
        blocks = split_blocks(stream, seq_len)
        return {"input_ids": blocks, "labels": [list(block) for block in blocks]}

    # Up to 1000 documents per stream (all of the embedded corpus's splits: the blocks `evaluation` cuts); the tail
    # of each stream shorter than a block is dropped.
    blocks = DatasetDict({
        split: dataset.map(to_blocks, batched=True, batch_size=1000, remove_columns=dataset.column_names)
        for split, dataset in texts.items()
    })
    for split, dataset in blocks.items():
        if len(dataset) == 0:
            raise ValueError(
                f"the {split} text is shorter than one block of --seq-len {seq_len} tokens: give more text, or a "
                f"smaller --seq-len."
            )
    return blocks


def default_prompt(text: str) -> str:
    """The first speaker's cue in `text` (a line ending with a colon, as `ROMEO:` in a play), else its first
    line: something the model has seen how to continue."""
    lines = [line for line in text.splitlines()[:100] if line.strip()] or ["\n"]
    return next((line for line in lines if line.endswith(":")), lines[0]) + "\n"


def evenly_spaced(dataset, count: int):
    if len(dataset) <= count:
        return dataset
    return dataset.select(np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist())


def mixed_precision() -> dict:
    """bf16 on GPUs that have it, else fp16 on GPUs; float32 on CPU (bf16 there is slow without AMX units)."""
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def hardware(processes: int = 1) -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    if processes > 1:
        return f"{processes} processes, each on {hardware()}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"CPU: {model}, {threads} thread{'s' if threads > 1 else ''}"


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


def training_arguments(options: TrainingOptions) -> TrainingArguments:
    preset = PRESETS[options.preset]
    return TrainingArguments(
        output_dir=options.output_dir,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        # No gradients in evaluation: batches can be larger than training ones.
        per_device_eval_batch_size=max(options.batch_size, EVAL_BATCH_TOKENS // options.seq_len),
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=options.learning_rate,
        # Warm-up, then cosine decay to a tenth of the peak rate (nanoGPT's schedule).
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=min(preset.warmup_steps, options.max_steps // 10),
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=preset.adam_beta2,
        max_grad_norm=1.0,
        eval_strategy="steps",
        eval_steps=options.eval_steps,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(50, options.eval_steps // 4)),
        include_num_input_tokens_seen="all",
        seed=options.seed,
        report_to=[],
        # Without an accelerator the Trainer must be told that it runs on the CPU: otherwise the processes started by
        # torchrun or accelerate launch do not form a process group (each would train alone, on the same data).
        use_cpu=not torch.accelerator.is_available(),
        # Every parameter takes part in every step, so DDP need not search the graph for unused ones.
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=options.quiet,
        log_level="error" if options.quiet else "passive",
        **mixed_precision(),
    )


def write_run_file(folder: str, options: TrainingOptions, results: dict | None) -> dict:
    run = {"options": dataclasses.asdict(options), "results": results}
    with open(os.path.join(folder, RUN_FILE), "w") as file:
        json.dump(run, file, indent=2)
    return run


def read_run(folder: str) -> dict:
    """What `train` recorded in `folder`: `{"options": ..., "results": ...}` of a finished run."""
    path = os.path.join(folder, RUN_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no {RUN_FILE}: it is not a folder written by `posattn train`.")
    with open(path) as file:
        run = json.load(file)
    if run["results"] is None:
        raise ValueError(f"the training run in {folder} has not finished: finish it with "
                         f"`posattn train --output-dir {folder} --resume`.")
    return run


@contextlib.contextmanager
def progress_bars(enabled: bool):
    """Turn the progress bars of datasets and transformers off for a quiet run, and back on after it."""
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


def train(options: TrainingOptions) -> TrainingResult:
    """Train, evaluate, save and sample a model (see the module docstring). Raises `ValueError` on bad input, before
    any training, and `TrainingInterrupted` when Ctrl-C stopped the run (after saving a checkpoint)."""
    with progress_bars(not options.quiet):
        return train_run(options)


def train_run(options: TrainingOptions) -> TrainingResult:
    start = time.perf_counter()
    options = prepare_output_dir(options)
    texts = load_texts(options.data, options.text_column)
    folder = options.output_dir
    # Under torchrun or accelerate launch this joins the run's other processes (one per device). Only the main process
    # writes to the output folder, as the Trainer decides it (`should_save`); it does so once every process has
    # checked the folder, and the others then read the tokenizer it trained or reused.
    args = training_arguments(options)
    args.distributed_state.wait_for_everyone()
    with args.main_process_first(local=args.save_on_each_node, desc="tokenizer"):
        if args.should_save:
            tokenizer = tokenizer_for(options, texts["train"]["text"])
        else:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        blocks = pack(texts, tokenizer, options.seq_len)
        if args.should_save:
            if options.overwrite:  # only now: bad input above leaves the old run as it was
                clear_run(folder)
            os.makedirs(folder, exist_ok=True)
            tokenizer.save_pretrained(folder)  # now: --resume finds the tokenizer its checkpoints were made with
            write_run_file(folder, options, None)

    set_seed(options.seed)
    model = PosAttnForCausalLM(model_config(options, tokenizer))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=blocks["train"],
        eval_dataset=evenly_spaced(blocks["validation"], PERIODIC_EVAL_BLOCKS),
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    checkpoint = last_complete_checkpoint(folder) if options.resume else None
    if options.resume:
        print(f"resuming from {checkpoint}" if checkpoint else f"{folder} has no checkpoint yet: starting at step 0")
    if options.quiet:  # without progress bars, the Trainer prints its logs instead
        trainer.remove_callback(PrinterCallback)
    with StopOnCtrlC() as stop:
        trainer.add_callback(stop)
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
    if stop.interrupted:
        raise TrainingInterrupted(folder, last_complete_checkpoint(folder))

    eval_loss = trainer.evaluate(blocks["validation"])["eval_loss"]
    validation_ids = np.array(blocks["validation"]["input_ids"])
    baseline = unigram_baseline(np.array(blocks["train"]["input_ids"]), validation_ids[:, 1:], len(tokenizer))
    # How the model samples unless told otherwise (`posattn generate`, the pipeline, `generate`); top_k=0: no top-k
    # cut, which transformers would otherwise apply at 50 tokens.
    model.generation_config.update(do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=200,
                                   pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = True  # the Trainer turned it off for training; generation wants it
    trainer.save_model(folder)  # weights, config (with auto_map), code files, generation config, tokenizer
    prompt = options.sample_prompt or default_prompt(texts["validation"]["text"][0])
    sample = generate_text(model, tokenizer, prompt, seed=options.seed)

    result = TrainingResult(
        output_dir=folder,
        eval_loss=eval_loss,
        perplexity=math.exp(eval_loss),
        unigram_loss=baseline["loss"],
        unigram_perplexity=baseline["perplexity"],
        steps=trainer.state.global_step,
        tokens_seen=int(trainer.state.num_input_tokens_seen),
        train_seconds=train_output.metrics["train_runtime"],
        wall_seconds=time.perf_counter() - start,
        hardware=hardware(args.world_size),
        parameters=model.num_parameters(),
        sample=sample,
        options=dataclasses.asdict(options),
    )
    results = result.to_dict()
    del results["options"]  # stored next to the results in the run file
    results.update(prompt=prompt, data=CORPUS_NAME if not options.data else ", ".join(options.data),
                   train_tokens=int(len(blocks["train"]) * options.seq_len),
                   validation_tokens=int(validation_ids[:, 1:].size))
    if args.should_save:
        write_model_card(folder, model.config, write_run_file(folder, options, results))
    return result
