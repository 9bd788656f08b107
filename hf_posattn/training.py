"""Train an hf_posattn language model from scratch with the Hugging Face `Trainer`.

    from hf_posattn.training import TrainingOptions, train
    result = train(TrainingOptions(position="alibi", output_dir="runs/alibi"))
    print(result.perplexity, result.unigram_perplexity)

One call does the whole job: text (the embedded corpus by default), a byte-level BPE tokenizer, packed blocks of
`seq_len` tokens, the model of a preset, the `Trainer` (AdamW, warm-up then cosine decay, periodic evaluation,
checkpoints, bf16/fp16 on GPUs that support it), then the final model, tokenizer, code and model card saved in
`output_dir`, the validation perplexity next to the unigram baseline, and a sample. The same options with the same
seed train the same model, so runs that differ only in `position` compare the position schemes.

The output folder is owned through `runs` (one writer, staged replacement, files that appear whole); `train_run` is
the sequence of phases: check the inputs, claim the folder, tokens, trainer, fit, finish.
"""

import contextlib
import dataclasses
import math
import os
import platform
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
from transformers.trainer_utils import TrainOutput
from transformers.utils import logging as transformers_logging

from . import PosAttnConfig, PosAttnForCausalLM
from .positional import POSITION_SCHEMES
from .corpus import CORPUS_NAME, load_texts
from .evaluation import EVAL_BATCH_TOKENS, text_unigram_baseline, unbounded_schemes
from .files import WriteFailed, normal_modes, resolve_path, resolve_source, saved_whole, write_with, writing
from .generation import generate_text
from .model_card import write_model_card
from .reporting import check_report_to, run_name, write_training_figure
from .runs import (RUN_FILE, RunPlan, claim, last_complete_checkpoint, notice, plan_run, read_run_record,
                   resume_checkpoint, write_run_file)
from .tokenization import encode_documents, has_tokenizer, split_blocks, train_tokenizer


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

    # Paths (output_dir, data, tokenizer, init_from) are resolved to real absolute paths when the options are
    # resolved, and recorded so; empty text is refused (it is not "not given").
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
    vocab_size: int | None = None  # with tokenizer or init_from: theirs (another value is refused)
    scale_embeddings: bool | None = None  # False: see PosAttnConfig.scale_embeddings (the Vaswani et al. setup)
    tokenizer: str | None = None  # a folder with a tokenizer to reuse instead of training one
    seed: int | None = None  # 0
    eval_steps: int | None = None  # 5 evaluations per run
    save_steps: int | None = None  # a checkpoint with every evaluation
    resume: bool = False  # continue the run in output_dir from its last checkpoint
    overwrite: bool = False  # replace the run in output_dir
    sample_prompt: str | None = None  # the first speaker's cue (or first line) of the validation text
    quiet: bool = False  # no progress bar or logs
    report_to: list[str] | None = None  # no logging integration; else the Trainer's (reporting.check_report_to)
    init_from: str | None = None  # start from the model in this folder: its weights, architecture and tokenizer
    rope_parameters: dict | None = None  # with init_from: a rotary variant applied to it (loading.scaled_config)


DEFAULTS = {"position": "sinusoidal", "preset": "tiny", "text_column": "text", "gradient_accumulation_steps": 1,
            "seed": 0, "scale_embeddings": False}

# Options that must be the same to continue a run: the others (steps, evaluation, prompt) may change on resume.
RUN_IDENTITY = ("position", "preset", "data", "text_column", "seq_len", "batch_size", "gradient_accumulation_steps",
                "learning_rate", "vocab_size", "scale_embeddings", "tokenizer", "seed", "init_from", "rope_parameters")


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


class TrainingStopped(Exception):
    """Training stopped before its end; what it saved stays, and `resume=True` continues from its last checkpoint."""


class TrainingInterrupted(TrainingStopped):
    """Ctrl-C stopped training; the checkpoint it saved stays, and `resume=True` continues from it."""

    def __init__(self, output_dir: str, checkpoint: str | None):
        self.output_dir, self.checkpoint = output_dir, checkpoint
        where = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been saved yet"
        super().__init__(f"training interrupted: {where}. Continue with --resume (resume=True) "
                         f"and the same --output-dir {output_dir}.")


class TrainingWriteFailed(TrainingStopped, WriteFailed):
    """A file of the run could not be written while it trained (a full disk while a checkpoint was saved): training
    stopped; the checkpoints saved before stay, and `resume=True` continues from the last whole one."""

    def __init__(self, output_dir: str, failure: WriteFailed):
        self.output_dir, self.failure = output_dir, failure
        super().__init__(f"{failure}. Training stopped there; what it saved before stays. Free some space, then "
                         f"continue with --resume (resume=True) and the same --output-dir {output_dir}.")


class TrainingDiverged(TrainingStopped, ValueError):
    """The loss or the weights became NaN or infinite: training stopped without saving them."""

    def __init__(self, output_dir: str, step: int, what: str, learning_rate: float, checkpoint: str | None):
        self.output_dir, self.checkpoint = output_dir, checkpoint
        kept = f"the last good checkpoint, {checkpoint}, is kept" if checkpoint else "no checkpoint had been saved"
        super().__init__(f"{what} at step {step}: training stopped there and saved nothing from that step on "
                         f"({kept}). The learning rate {learning_rate} is probably too high: train again with a "
                         f"lower --learning-rate (with --overwrite, or another --output-dir).")


def resolve(options: TrainingOptions) -> TrainingOptions:
    """The options with every path resolved (`resolve_paths`) and every default filled in from the preset (or from
    the model of `init_from`, or the tokenizer of `tokenizer`); checks what can be checked before any work."""
    options = resolve_paths(options)
    options = from_initial_model(options)
    options = from_tokenizer(options)
    options = dataclasses.replace(
        options, **{name: value for name, value in DEFAULTS.items() if getattr(options, name) is None})
    if options.preset not in PRESETS:
        raise ValueError(f"unknown preset {options.preset!r}: choose one of {', '.join(PRESETS)}.")
    if options.position not in POSITION_SCHEMES:  # read live: schemes registered at run time count
        raise ValueError(f"unknown position scheme {options.position!r}: choose one of "
                         f"{', '.join(POSITION_SCHEMES)}.")
    preset = PRESETS[options.preset]
    resolved = dataclasses.replace(
        options,
        output_dir=options.output_dir or resolve_path(
            os.path.join("runs", f"posattn-{options.preset}-{options.position}"), "--output-dir"),
        data=list(options.data) if options.data else None,
        report_to=check_report_to(options.report_to),
        **{name: getattr(preset, name) if getattr(options, name) is None else getattr(options, name)
           for name in ("seq_len", "max_steps", "batch_size", "learning_rate", "vocab_size")},
    )
    steps = max(1, resolved.max_steps // 5) if resolved.eval_steps is None else resolved.eval_steps
    resolved = dataclasses.replace(resolved, eval_steps=steps,
                                   save_steps=steps if resolved.save_steps is None else resolved.save_steps)
    for name in ("seq_len", "max_steps", "batch_size", "gradient_accumulation_steps", "vocab_size", "eval_steps",
                 "save_steps", "learning_rate"):
        value = getattr(resolved, name)
        if not (math.isfinite(value) and value > 0):  # not NaN (which `<= 0` lets through), not infinite
            raise ValueError(f"{name} must be a positive number, got {value}.")
    if not 0 <= resolved.seed < 2**32:  # before anything is written: set_seed would refuse it only after
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, got {resolved.seed}.")
    if resolved.seq_len < 2:  # the loss would be NaN from the first step: nothing in a block to predict
        raise ValueError(f"--seq-len {resolved.seq_len}: the model learns to predict each token of a block from the "
                         f"tokens before it in the same block, so a block of one token has nothing to learn from. "
                         f"Give --seq-len 2 or more.")
    limit = bounded_length(resolved)
    if limit is not None and resolved.seq_len > limit:
        raise ValueError(
            f"--seq-len {resolved.seq_len} is above the {limit} positions that {resolved.position} positions have "
            f"in {resolved.init_from or f'preset {resolved.preset!r}'} (max_position_embeddings): use --seq-len <= "
            f"{limit}, or a scheme that runs at any length ({', '.join(unbounded_schemes())})."
        )
    return resolved


def resolve_paths(options: TrainingOptions) -> TrainingOptions:
    """Every path of `options` as the real absolute path it names (`files.resolve_path`; a `data` source that is not
    a local path, a Hub dataset name, is kept as given): resolved once, here, and recorded so, so that `--resume`
    from another folder reads the same files. Empty text is refused, not taken as "not given"."""
    def path(name: str, flag: str) -> str | None:
        value = getattr(options, name)
        return None if value is None else resolve_path(value, flag)

    return dataclasses.replace(
        options, output_dir=path("output_dir", "--output-dir"), tokenizer=path("tokenizer", "--tokenizer"),
        init_from=path("init_from", "--init-from"),
        data=None if options.data is None else [resolve_source(source, "--data") for source in options.data])


def reused_tokenizer(folder: str, flag: str):
    """The tokenizer in `folder` (of --tokenizer or --init-from), checked before any work: readable (a damaged file
    is named), with an end-of-text token, which training puts between documents and generation stops at."""
    from .loading import read_tokenizer

    tokenizer = read_tokenizer(folder)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{flag} {folder}: its tokenizer has no end-of-text token (eos_token), which training puts "
                         f"between documents and generation stops at. Give a tokenizer that has one (e.g. another "
                         f"run's folder), or leave {flag} out to train one.")
    return tokenizer


def from_tokenizer(options: TrainingOptions) -> TrainingOptions:
    """With `tokenizer` (and no `init_from`, which fixes it): the vocabulary size is the tokenizer's, recorded so;
    a different `vocab_size` given is refused (it would be claimed in the run file and card, and not used). A folder
    without a tokenizer yet is left to `check_inputs` (the study saves its tokenizer before its runs train)."""
    if options.tokenizer is None or options.init_from is not None or not has_tokenizer(options.tokenizer):
        return options
    size = len(reused_tokenizer(options.tokenizer, "--tokenizer"))
    if options.vocab_size not in (None, size):
        raise ValueError(f"--tokenizer {options.tokenizer} has {size} tokens, and --vocab-size {options.vocab_size} "
                         f"asks for another vocabulary: a reused tokenizer brings its own. Drop --vocab-size (or give "
                         f"--vocab-size {size}), or leave --tokenizer out to train a tokenizer of that size.")
    return dataclasses.replace(options, vocab_size=size)


def from_initial_model(options: TrainingOptions) -> TrainingOptions:
    """With `init_from`: the options that the model there fixes (its scheme, tokenizer, vocabulary and embedding
    scale) filled in from it; a different value given for one of them is refused. `rope_parameters` need it."""
    if options.init_from is None:
        if options.rope_parameters is not None:
            raise ValueError("rope_parameters (--rope-scaling, --rope-parameters) change a trained rotary model: give "
                             "the model with --init-from DIR (init_from).")
        return options
    from .loading import load_model_config

    config = load_model_config(options.init_from, options.rope_parameters)
    reused_tokenizer(options.init_from, "--init-from")
    fixed = {"position": config.position_embedding_type, "tokenizer": options.init_from,
             "vocab_size": config.vocab_size, "scale_embeddings": config.scale_embeddings}
    changed = [f"{name}={getattr(options, name)!r} (the model's: {value!r})" for name, value in fixed.items()
               if getattr(options, name) not in (None, value)]
    if changed:
        raise ValueError(f"--init-from {options.init_from} starts from that model, with its own {', '.join(changed)}: "
                         f"drop those options, or train from scratch without --init-from.")
    return dataclasses.replace(options, **fixed)


def initial_config(options: TrainingOptions) -> PosAttnConfig | None:
    """The config of the model `init_from` starts from, `rope_parameters` applied; None without `init_from`."""
    if options.init_from is None:
        return None
    from .loading import load_model_config

    return load_model_config(options.init_from, options.rope_parameters)


def bounded_length(options: TrainingOptions) -> int | None:
    """The longest input the scheme of `options` can take with its preset's table (`PositionScheme.max_length`), or
    None if it runs at any length."""
    preset = PRESETS[options.preset]
    config = initial_config(options) or PosAttnConfig(
        position_embedding_type=options.position, hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers, num_attention_heads=preset.num_attention_heads,
        max_position_embeddings=preset.max_position_embeddings)
    return POSITION_SCHEMES[options.position].max_length(config)


def model_config(options: TrainingOptions, tokenizer) -> PosAttnConfig:
    preset = PRESETS[options.preset]
    # A length-bounded scheme (learned) gets exactly the preset's table; the others run at any length, and their
    # tables (sinusoidal, rotary) are only a cache that should cover the training length.
    max_positions = preset.max_position_embeddings
    if bounded_length(options) is None:
        max_positions = max(max_positions, options.seq_len)
    return PosAttnConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        intermediate_size=4 * preset.hidden_size,
        max_position_embeddings=max_positions,
        position_embedding_type=options.position,
        scale_embeddings=options.scale_embeddings,
        hidden_dropout_prob=preset.dropout,
        attention_probs_dropout_prob=preset.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def resumed_options(options: TrainingOptions, plan: RunPlan) -> tuple[TrainingOptions, str | None]:
    """On resume: the options the run was started with, for every option not given now, and the checkpoint to
    continue from (`runs.resume_checkpoint`); refuses options that would change the run, a finished run that would
    not train longer, and a run none of whose checkpoints is whole."""
    options = resolve_paths(options)  # compared with the paths the run recorded, resolved
    run = read_run_record(plan.work_dir)
    started, results = run["options"], run["results"]
    changed = [name for name in RUN_IDENTITY
               if getattr(options, name) is not None and getattr(options, name) != started.get(name)]
    if changed:
        was = ", ".join(f"{name}={started.get(name)!r} (now {getattr(options, name)!r})" for name in changed)
        raise ValueError(f"--resume continues the run in {plan.target} with the options it was started with, but "
                         f"{was}. Drop those options, or start a new run in another --output-dir.")
    # What is not given now is what the run was started with (its steps too), not the preset's default.
    recorded = {name: value for name, value in started.items() if name in TrainingOptions.__dataclass_fields__
                and name != "output_dir" and (name in RUN_IDENTITY or getattr(options, name, False) is None)}
    resolved = resolve(dataclasses.replace(options, output_dir=plan.target, **recorded))
    if results is not None:
        steps = results.get("steps")
        if not isinstance(steps, int) or resolved.max_steps <= steps:
            raise ValueError(f"{plan.target} holds a finished run ({steps} steps): there is nothing to resume. To "
                             f"train it longer, give --resume a larger --max-steps (e.g. --max-steps "
                             f"{2 * steps if isinstance(steps, int) else 'N'}).")
    checkpoint = resume_checkpoint(plan.work_dir)
    if results is not None and checkpoint is None:
        raise ValueError(f"{plan.target} holds a finished run without checkpoints (they were removed): it cannot "
                         f"be trained longer. Start a new run (with --overwrite, or another --output-dir).")
    return resolved, checkpoint


@dataclass
class Inputs:
    """What `check_inputs` checked and read: the resolved options, the text, where the run writes, the model of
    `init_from` (loaded and checked) and, on resume, the checkpoint to continue from."""

    options: TrainingOptions
    texts: DatasetDict
    plan: RunPlan
    initial_model: PosAttnForCausalLM | None = None
    checkpoint: str | None = None


def check_inputs(options: TrainingOptions) -> Inputs:
    """Every input, in the order a user fixes them, before any work: the options, the data, the tokenizer, the
    model of --init-from (its weights too), then the output folder (on resume the folder comes first: it holds the
    options; then its checkpoints). Reads only: every process of a distributed run checks the same."""
    if options.resume:
        plan = plan_run(resolve(options).output_dir, resume=True)
        options, checkpoint = resumed_options(options, plan)
        texts = load_texts(options.data, options.text_column)
        return Inputs(options, texts, plan, load_initial_model(options), checkpoint)
    options = resolve(options)
    texts = load_texts(options.data, options.text_column)
    if options.tokenizer and not has_tokenizer(options.tokenizer):
        raise ValueError(f"--tokenizer {options.tokenizer}: no tokenizer.json there; give a folder that holds a "
                         f"tokenizer (e.g. another run's --output-dir).")
    initial = load_initial_model(options)  # a damaged --init-from is refused before the run folder is touched
    return Inputs(options, texts, plan_run(options.output_dir, overwrite=options.overwrite), initial)


def usable_length(options: TrainingOptions) -> int:
    """The longest input the model is good for, which the saved tokenizer truncates to (`truncation=True`): the
    longest input of a length-bounded scheme (learned: its table), else the training length (the other schemes run
    longer, but were not trained to)."""
    limit = bounded_length(options)
    return options.seq_len if limit is None else limit


def tokenizer_for(options: TrainingOptions, train_texts, plan: RunPlan):
    """The tokenizer of `--tokenizer`, else the one of the run being resumed (it keeps its tokens), else a new one
    trained on the training text."""
    source = options.tokenizer or (plan.work_dir if plan.resume else None)
    if source and has_tokenizer(source):
        tokenizer = AutoTokenizer.from_pretrained(source)
    else:
        tokenizer = train_tokenizer(train_texts, options.vocab_size)
    tokenizer.model_max_length = usable_length(options)
    return tokenizer


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


def training_arguments(options: TrainingOptions, folder: str) -> TrainingArguments:
    preset = PRESETS[options.preset]
    return TrainingArguments(
        output_dir=folder,
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
        logging_nan_inf_filter=False,  # a NaN loss must be seen (StopOnNonFinite), not averaged away
        include_num_input_tokens_seen="all",
        seed=options.seed,
        report_to=options.report_to,
        run_name=run_name(options.output_dir),  # the target's name, not the staging folder's
        project="hf-posattn",  # trackio's project (transformers' default: "huggingface")
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
    any training; `TrainingInterrupted` when Ctrl-C stopped the run (after saving a checkpoint) and
    `TrainingDiverged` (a `ValueError`) when its loss or weights became NaN or infinite."""
    with progress_bars(not options.quiet):
        return train_run(options)




def train_run(options: TrainingOptions) -> TrainingResult:
    start = time.perf_counter()
    inputs = check_inputs(options)
    options, texts, plan = inputs.options, inputs.texts, inputs.plan
    args = training_arguments(options, plan.work_dir)
    # Under torchrun or accelerate launch this joins the run's other processes (one per device). Only the main process
    # writes to the output folder, as the Trainer decides it (`should_save`); it does so once every process has
    # checked the inputs, and the others then read the tokenizer it trained or reused.
    args.distributed_state.wait_for_everyone()
    with contextlib.ExitStack() as owned:
        with args.main_process_first(local=args.save_on_each_node, desc="tokenizer"):
            tokenizer, blocks = prepare_tokens(options, texts, plan, args)
            if args.should_save:  # the folder is touched only now: bad input above leaves it as it was
                owned.enter_context(claim(plan))
                record_start(options, plan, tokenizer)
        trainer = make_trainer(options, args, tokenizer, blocks, inputs.initial_model)
        train_output = fit(trainer, options, plan, inputs.checkpoint)
        return finish(trainer, options, plan, texts, blocks, train_output, start)


def prepare_tokens(options: TrainingOptions, texts: DatasetDict, plan: RunPlan, args: TrainingArguments):
    """The tokenizer (trained or reused by the main process, read back from the run folder by the others) and the
    text packed into blocks (too little text is refused here)."""
    if args.should_save:
        tokenizer = tokenizer_for(options, texts["train"]["text"], plan)
    else:
        tokenizer = AutoTokenizer.from_pretrained(plan.work_dir)
    return tokenizer, pack(texts, tokenizer, options.seq_len)


def record_start(options: TrainingOptions, plan: RunPlan, tokenizer) -> None:
    """The run's tokenizer (which --resume reuses) and its options, results to come: an unfinished run."""
    with saved_whole(plan.work_dir, what=f"the tokenizer in {plan.work_dir}") as temporary:
        tokenizer.save_pretrained(temporary)
    write_run_file(plan.work_dir, dataclasses.asdict(options), None)


def load_initial_model(options: TrainingOptions) -> PosAttnForCausalLM | None:
    """The model of `init_from` (`rope_parameters` applied), checked as every tool checks a model folder (a damaged
    file is named); None without `init_from`."""
    if options.init_from is None:
        return None
    from .loading import load_model

    return load_model(options.init_from, rope_parameters=options.rope_parameters)[0]


def make_trainer(options: TrainingOptions, args: TrainingArguments, tokenizer, blocks: DatasetDict,
                 initial: PosAttnForCausalLM | None = None) -> Trainer:
    """The Trainer of the run: the model of `init_from` (`initial`, loaded by `check_inputs`), else a new model of
    the preset."""
    set_seed(options.seed)
    trainer = Trainer(
        model=initial if initial is not None else PosAttnForCausalLM(model_config(options, tokenizer)),
        args=args,
        train_dataset=blocks["train"],
        eval_dataset=evenly_spaced(blocks["validation"], PERIODIC_EVAL_BLOCKS),
        data_collator=default_data_collator,
        processing_class=tokenizer,
    )
    if options.quiet:  # without progress bars, the Trainer prints its logs instead
        trainer.remove_callback(PrinterCallback)
    return trainer


def fit(trainer: Trainer, options: TrainingOptions, plan: RunPlan, checkpoint: str | None = None):
    """`trainer.train`, from `checkpoint` on resume (the last whole one, chosen by `check_inputs`); stops cleanly on
    Ctrl-C, on NaN/inf and when a checkpoint cannot be written (a full disk)."""
    if plan.resume:
        notice(f"resuming from {checkpoint}" if checkpoint else f"{plan.work_dir} has no checkpoint yet: starting at "
                                                                f"step 0")
    non_finite = StopOnNonFinite()
    trainer.add_callback(non_finite)
    trainer.add_callback(StopAtMaxSteps())
    trainer.add_callback(NormalModes())
    with StopOnCtrlC() as stop:
        trainer.add_callback(stop)
        try:
            with writing(f"a checkpoint in {plan.work_dir}"):  # safetensors' and torch.save's failures say so
                train_output = trainer.train(resume_from_checkpoint=checkpoint)
        except NothingLeftToTrain:
            train_output = TrainOutput(trainer.state.global_step, 0.0, {"train_runtime": 0.0})
        except WriteFailed as failure:
            raise TrainingWriteFailed(plan.target, failure) from failure
    if non_finite.found:
        step, what = non_finite.found
        raise TrainingDiverged(plan.target, step, what, options.learning_rate,
                               last_complete_checkpoint(plan.work_dir))
    if stop.interrupted:
        raise TrainingInterrupted(plan.target, last_complete_checkpoint(plan.work_dir))
    return train_output


def finish(trainer: Trainer, options: TrainingOptions, plan: RunPlan, texts: DatasetDict, blocks: DatasetDict,
           train_output, start: float) -> TrainingResult:
    """Evaluate on the whole validation split, save the model whole, sample it, then record the results: the card,
    and the run file last (a run without results is an unfinished one)."""
    args, model, tokenizer = trainer.args, trainer.model, trainer.processing_class
    if args.should_save:  # trainer_state.json in the run folder, for its training figure (checkpoints may go)
        write_with(os.path.join(plan.work_dir, "trainer_state.json"), trainer.state.save_to_json)
    eval_loss = trainer.evaluate(blocks["validation"])["eval_loss"]
    validation_ids = np.array(blocks["validation"]["input_ids"])
    baseline = text_unigram_baseline(tokenizer, texts["train"]["text"], texts["validation"]["text"])
    # How the model samples unless told otherwise (`posattn generate`, the pipeline, `generate`); top_k=0: no top-k
    # cut, which transformers would otherwise apply at 50 tokens.
    model.generation_config.update(do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=200,
                                   pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = True  # the Trainer turned it off for training; generation wants it
    save_model(trainer, plan.work_dir)
    prompt = options.sample_prompt or default_prompt(texts["validation"]["text"][0])
    sample = generate_text(model, tokenizer, prompt, seed=options.seed)

    result = TrainingResult(
        output_dir=plan.target,
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
        run = {"options": result.options, "results": results}
        write_training_figure(plan.work_dir, baseline=baseline["loss"], label=run_name(plan.target))
        write_model_card(plan.work_dir, model.config, run)
        write_run_file(plan.work_dir, run["options"], run["results"])
    return result


def save_model(trainer: Trainer, folder: str) -> None:
    """Weights, config (with auto_map), code files, generation config and tokenizer, saved in a temporary folder and
    renamed into `folder`: a save that fails (a full disk) leaves no config.json without its weights. Every process
    calls it (gathering sharded weights is collective); the main one writes."""
    if not trainer.args.should_save:
        trainer.save_model(os.path.join(folder, "unused"))  # writes nothing off the main process
        return
    with saved_whole(folder, what=f"the model in {folder}") as temporary:
        trainer.save_model(temporary)
