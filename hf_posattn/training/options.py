"""What a training run is: the presets, the options (`TrainingOptions`), and their resolution into the run's plan:
every default filled in, every path resolved, the data, the starting model and the run folder read once, and
everything that can be checked checked, before any work.
"""

import dataclasses
import math
import os
from dataclasses import dataclass

from datasets import DatasetDict

from ..data.corpus import load_texts
from ..data.tokenizers import has_tokenizer
from ..files import resolve_path, resolve_source
from ..model.configuration_posattn import PosAttnConfig
from ..model.modeling_posattn import PosAttnForCausalLM
from ..model.positional import POSITION_SCHEMES
from ..study.perplexity import unbounded_schemes
from .folder import (
    RunPlan,
    plan_run,
    read_run_record,
    resume_checkpoint,
)
from .logs import check_report_to


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
    from ..sharing.loading import read_tokenizer

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
    from ..sharing.loading import load_model_config

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
    from ..sharing.loading import load_model_config

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


def load_initial_model(options: TrainingOptions) -> PosAttnForCausalLM | None:
    """The model of `init_from` (`rope_parameters` applied), checked as every tool checks a model folder (a damaged
    file is named); None without `init_from`."""
    if options.init_from is None:
        return None
    from ..sharing.loading import load_model

    return load_model(options.init_from, rope_parameters=options.rope_parameters)[0]
