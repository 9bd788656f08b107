"""What a training run is: the presets, the options (`TrainingOptions`) with each default written once, here, and
`complete`, which fills in every default and checks every value without reading a file. `plan.py` turns a user's
options into the run's plan in one pass, with the files it reads.

Light to import (no Trainer, no datasets): the command line prints its help from the presets and defaults here.
"""

import dataclasses
import os
from dataclasses import dataclass

import torch

from .. import arguments
from ..arguments import one_or_more, optional
from ..common import option
from ..data.tasks import LANGUAGE_MODELLING, task_named
from ..files import resolve_path, resolve_source
from ..model.configuration_posattn import DEFAULT_POSITION, PosAttnConfig
from ..model.positional import POSITION_SCHEMES, LengthLimit, length_limit, unbounded_schemes
from .logs import REPORT_TO_DEFAULT, check_report_to


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
    initializer_range: float = 0.02


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
    # The synthetic tasks' model (--task): the smallest that learns passkey at L = 64 on 2 CPU cores (docs/tasks.md
    # has the search). Initialised at 0.1, not GPT-2's 0.02: at 0.02 no scheme learned passkey in 1,500 steps. Its
    # vocabulary is the task's own.
    "task": Preset("2 layers, 128 wide, 4 heads, the task's own words: 0.4M parameters; CPU minutes",
                   num_hidden_layers=2, hidden_size=128, num_attention_heads=4, max_position_embeddings=1024,
                   dropout=0.0, vocab_size=0, seq_len=64, batch_size=32, max_steps=1500, learning_rate=1e-3,
                   warmup_steps=100, adam_beta2=0.98, initializer_range=0.1),
}
# The preset of a run that does not name one: of language modelling, and of a synthetic task.
DEFAULT_PRESET = "tiny"
TASK_PRESET = "task"  # of every synthetic task

# The options a preset gives when they are left out.
PRESET_OPTIONS = ("seq_len", "max_steps", "batch_size", "learning_rate", "vocab_size")
DEFAULT_OUTPUT_DIR = os.path.join("runs", "posattn-{preset}-{position}")  # a synthetic task: "-{task}" after it
EVALUATIONS = 5  # per run, when --eval-steps is left out; a checkpoint with each
EVAL_BATCH_TOKENS = 8192  # evaluation's windows per forward pass, by default: this many tokens' worth


@dataclass
class TrainingOptions:
    """What to train. An option left out takes the default written here; `None` where it is not one value: the
    preset's (`PRESET_OPTIONS`), or what the comment says. With `init_from`, the options its model fixes (scheme,
    tokenizer, vocabulary, embedding scale) are the model's; with `resume`, an option left out is the one the run
    was started with. An option given at its default counts as left out."""

    # Paths (output_dir, data, tokenizer, init_from) are resolved to real absolute paths, once, and recorded so;
    # empty text is refused (it is not "left out").
    output_dir: str | None = None  # DEFAULT_OUTPUT_DIR
    position: str = DEFAULT_POSITION
    task: str = LANGUAGE_MODELLING  # "lm": text (`data`); or a synthetic task (data/tasks: passkey, recall, ...)
    preset: str | None = None  # DEFAULT_PRESET; a synthetic task: TASK_PRESET
    data: list[str] | None = None  # the embedded corpus; else text files, or one `datasets` dataset (name or path)
    text_column: str = "text"
    seq_len: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float | None = None
    vocab_size: int | None = None  # with tokenizer or init_from: theirs (another value is refused)
    scale_embeddings: bool = False  # see PosAttnConfig.scale_embeddings (the Vaswani et al. setup)
    tokenizer: str | None = None  # a folder with a tokenizer to reuse; None: train one
    seed: int = 0
    eval_steps: int | None = None  # max_steps / EVALUATIONS
    save_steps: int | None = None  # eval_steps: a checkpoint with every evaluation
    resume: bool = False  # continue the run in output_dir from its last checkpoint
    overwrite: bool = False  # replace the run in output_dir
    sample_prompt: str | None = None  # the first speaker's cue (or first line) of the validation text
    quiet: bool = False  # no progress bars or log lines
    report_to: list[str] | tuple[str, ...] = (REPORT_TO_DEFAULT,)  # the Trainer's integrations (logs.check_report_to)
    init_from: str | None = None  # start from the model in this folder: its weights, architecture and tokenizer
    rope_parameters: dict | None = None  # with init_from: a rotary variant applied to it (loading.scaled_config)
    random_positions: int | None = None  # each batch reads an ordered random subset of [0, N) as positions (Ruoss et al.)

    def __post_init__(self):
        arguments.check_fields(self, FIELD_CHECKS)


# What each option accepts, checked when the options are made: a wrong type or a number out of the command line's
# bounds is refused naming the field, before any work. The bounds between options are `complete`'s.
FIELD_CHECKS = {
    "output_dir": optional(arguments.path),
    "position": arguments.text,
    "task": arguments.text,
    "preset": optional(arguments.text),
    "data": optional(one_or_more(arguments.path)),  # one source alone is one source
    "text_column": arguments.text,
    "seq_len": optional(arguments.integer),
    "max_steps": optional(arguments.integer),
    "batch_size": optional(arguments.integer),
    "gradient_accumulation_steps": arguments.integer,
    "learning_rate": optional(arguments.positive),
    "vocab_size": optional(arguments.integer),
    "scale_embeddings": arguments.flag,
    "tokenizer": optional(arguments.path),
    "seed": arguments.seed,
    "eval_steps": optional(arguments.integer),
    "save_steps": optional(arguments.integer),
    "resume": arguments.flag,
    "overwrite": arguments.flag,
    "sample_prompt": optional(arguments.text),
    "quiet": arguments.flag,
    "report_to": one_or_more(arguments.text),  # then logs.check_report_to: the names themselves
    "init_from": optional(arguments.path),
    "rope_parameters": optional(arguments.mapping),
    "random_positions": optional(arguments.integer),
}

DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainingOptions)}

# Options that must be the same to continue a run: the others (steps, evaluation, prompt) may change on resume.
RUN_IDENTITY = ("position", "task", "random_positions", "preset", "data", "text_column", "seq_len", "batch_size", "gradient_accumulation_steps",
                "learning_rate", "vocab_size", "scale_embeddings", "tokenizer", "seed", "init_from", "rope_parameters")
# Options that --resume never takes from the run: where it is, and how this command runs.
NOT_RESUMED = ("output_dir", "resume", "overwrite", "quiet")


def given(options: TrainingOptions, name: str) -> bool:
    return getattr(options, name) != DEFAULTS[name]


def resolve_paths(options: TrainingOptions) -> TrainingOptions:
    """Every path of `options` as the real absolute path it names (`files.resolve_path`; a `data` source that is not
    a local path, a Hub dataset name, is kept as given): resolved once, and recorded so, so that `--resume` from
    another folder reads the same files. Empty text is refused, not taken as "not given"."""
    def path(name: str, flag: str) -> str | None:
        value = getattr(options, name)
        return None if value is None else resolve_path(value, flag)

    return dataclasses.replace(
        options, output_dir=path("output_dir", "--output-dir"), tokenizer=path("tokenizer", "--tokenizer"),
        init_from=path("init_from", "--init-from"),
        data=None if options.data is None else [resolve_source(source, "--data") for source in options.data])


def output_dir(options: TrainingOptions) -> str:
    """Where the run goes: `output_dir`, else `DEFAULT_OUTPUT_DIR` for its preset and scheme, resolved."""
    if options.output_dir is not None:
        return options.output_dir
    folder = DEFAULT_OUTPUT_DIR.format(preset=preset_of(options), position=options.position)
    return resolve_path(folder if options.task == LANGUAGE_MODELLING else f"{folder}-{options.task}", "--output-dir")


def preset_of(options: TrainingOptions) -> str:
    """The preset `options` name, else the default one of their task."""
    if options.preset is not None:
        return options.preset
    return DEFAULT_PRESET if options.task == LANGUAGE_MODELLING else TASK_PRESET


def moved_with_the_run(started: dict, target: str) -> dict:
    """A run's recorded options (`started`) with each path that lay beside the run's folder when it was recorded (a
    study's shared tokenizer, next to the study's runs) taken beside `target`, where the run is now: a folder of runs
    moved or copied elsewhere (another mount point, another machine) keeps its runs. Paths recorded relative, by
    versions that did not resolve them, read from here as they were read then."""
    paths = {name: started[name] for name in ("data", "tokenizer", "init_from") if started.get(name) is not None}
    moved = {**started, **{name: getattr(resolve_paths(TrainingOptions(**paths)), name) for name in paths}}
    if started.get("output_dir"):
        was = os.path.dirname(os.path.abspath(started["output_dir"]))
        for name in ("tokenizer", "init_from"):
            if moved.get(name) and os.path.dirname(moved[name]) == was:
                moved[name] = os.path.join(os.path.dirname(target), os.path.basename(moved[name]))
    return moved


def resumed(options: TrainingOptions, started: dict, target: str) -> TrainingOptions:
    """On resume: `options` (paths resolved) with what the run in `target` was `started` with for every option left
    out now; an option given now that would change the run is refused."""
    started = moved_with_the_run(started, target)
    changed = [name for name in RUN_IDENTITY if given(options, name) and getattr(options, name) != started.get(name)]
    if changed:
        was = ", ".join(f"{option(name, started.get(name))} (now {option(name, getattr(options, name))})"
                        for name in changed)
        raise ValueError(f"{option('resume', True)} continues the run in {target} with the options it was started "
                         f"with, but it was started with {was}. Drop those options, or start a new run in another "
                         f"{option('output_dir')}.")
    # What is left out now is what the run was started with (its steps too), not the preset's default.
    recorded = {name: value for name, value in started.items()
                if name in DEFAULTS and name not in NOT_RESUMED and not given(options, name)}
    return dataclasses.replace(options, output_dir=target, **recorded)


def complete(options: TrainingOptions, model: PosAttnConfig | None = None,
             tokenizer_size: int | None = None) -> TrainingOptions:
    """`options` (paths resolved) with every default filled in and every value checked, reading no file: first what
    the model of `init_from` fixes (`model`, its config with `rope_parameters` applied) or the size of the tokenizer
    of `tokenizer` (`tokenizer_size`), then the preset's values. Raises ValueError with the fix, naming the options
    the caller gave (`user`), never one that a step before filled in."""
    user = options
    options = fixed_by_model(options, model)
    options = for_task(options, user)
    if tokenizer_size is not None and options.init_from is None:
        options = sized_by_tokenizer(options, tokenizer_size, user)
    options = dataclasses.replace(options, preset=preset_of(options))
    if options.preset not in PRESETS:
        raise ValueError(f"unknown preset {options.preset!r}: choose one of {', '.join(PRESETS)}.")
    if options.position not in POSITION_SCHEMES:  # read live: schemes registered at run time count
        raise ValueError(f"unknown position scheme {options.position!r}: choose one of "
                         f"{', '.join(POSITION_SCHEMES)}.")
    preset = PRESETS[options.preset]
    options = dataclasses.replace(
        options, output_dir=output_dir(options), data=list(options.data) if options.data else None,
        report_to=check_report_to(options.report_to),
        **{name: getattr(preset, name) for name in PRESET_OPTIONS if getattr(options, name) is None})
    steps = max(1, options.max_steps // EVALUATIONS) if options.eval_steps is None else options.eval_steps
    options = dataclasses.replace(options, eval_steps=steps,
                                  save_steps=steps if options.save_steps is None else options.save_steps)
    limit = position_limit(options, model)
    check_values(options, limit)
    check_random_positions(options, limit)
    return options


def for_task(options: TrainingOptions, user: TrainingOptions) -> TrainingOptions:
    """A synthetic task brings its own text and words: --data, --text-column and --vocab-size do not apply (refused,
    when the caller gave them (`user`), not ignored), and the vocabulary size is the task's."""
    if options.task == LANGUAGE_MODELLING:
        return options
    task = task_named(options.task)
    given_here = [name for name in ("data", "text_column", "vocab_size") if given(user, name)]
    if given_here and not (given_here == ["vocab_size"] and user.vocab_size == task.vocab_size):
        named = [option(name, getattr(user, name)) for name in given_here]
        raise ValueError(f"{', '.join(named)}: the {task.name} task makes its own examples from its own "
                         f"{task.vocab_size} words; drop {' and '.join(option(name) for name in given_here)}, or "
                         f"train on text with {option('task', LANGUAGE_MODELLING)}.")
    if options.init_from is not None and options.vocab_size != task.vocab_size:
        raise ValueError(f"{option('init_from', options.init_from)} holds a model of {options.vocab_size} tokens, not "
                         f"one of the {task.name} task's {task.vocab_size} words: start the task from scratch "
                         f"without {option('init_from')}, or from a run of that task.")
    task.check_length(options.seq_len or PRESETS[preset_of(options)].seq_len)
    return dataclasses.replace(options, vocab_size=task.vocab_size)


# The most positions --random-positions may draw from: every scheme computes its angles and distances in float32,
# which counts whole numbers exactly up to 2**24 only; and the draw holds all N positions (8 bytes each) per batch.
MAX_RANDOM_POSITIONS = 2**24


def check_random_positions(options: TrainingOptions, limit: LengthLimit | None = None,
                           evaluated: tuple[int, str] | None = None) -> None:
    """--random-positions N: positions drawn from [0, N), for a scheme that reads positions. N must hold a block of
    --seq-len (and reach `evaluated`, the longest length the model will be evaluated at and the options that set it:
    a study's), and stay within what the scheme can represent (`limit`, from `position_limit`) and what the machine
    can draw (`MAX_RANDOM_POSITIONS`). Each refusal names the options it weighs against each other."""
    n = options.random_positions
    if n is None:
        return
    if not POSITION_SCHEMES[options.position].contributes():
        raise ValueError(f"--random-positions: {options.position} positions read no position, so random ones would "
                         f"change nothing. Drop --random-positions for {options.position}.")
    needed, by = evaluated or (options.seq_len, f"--seq-len {options.seq_len}")
    if n < max(needed, options.seq_len):
        example = "" if evaluated else f" (e.g. {8 * needed}, to evaluate at 8 times the length)"
        raise ValueError(f"--random-positions {n}: the model meets lengths of up to {needed} tokens ({by}), so "
                         f"training must draw positions from at least [0, {needed}): give --random-positions "
                         f"{needed} or more{example}.")
    if limit is not None and n > limit.positions:
        raise ValueError(f"--random-positions {n} draws positions up to {n - 1}, past {limit.why}: give "
                         f"--random-positions {limit.positions} or less, or train a scheme other than "
                         f"{options.position}.")
    if n > MAX_RANDOM_POSITIONS:
        raise ValueError(f"--random-positions {n}: at most {MAX_RANDOM_POSITIONS} (2**24), the positions float32 "
                         f"counts exactly, in which every scheme computes its angles and distances (and each batch "
                         f"draws from all of them). Give --random-positions {MAX_RANDOM_POSITIONS} or less.")


def fixed_by_model(options: TrainingOptions, model: PosAttnConfig | None) -> TrainingOptions:
    """With `init_from` (`model`: its config): the options that its model fixes, filled in from it; a different
    value given for one of them is refused. `rope_parameters` need a model to change."""
    if options.init_from is None:
        if options.rope_parameters is not None:
            raise ValueError("rope_parameters (--rope-scaling, --rope-parameters) change a trained rotary model: give "
                             "the model with --init-from DIR (init_from).")
        return options
    fixed = {"position": model.position_embedding_type, "tokenizer": options.init_from,
             "vocab_size": model.vocab_size, "scale_embeddings": model.scale_embeddings}
    changed = [f"{option(name, getattr(options, name))} (the model's: {value!r})" for name, value in fixed.items()
               if given(options, name) and getattr(options, name) != value]
    if changed:
        raise ValueError(f"{option('init_from', options.init_from)} starts from that model, with its own settings, "
                         f"but {', '.join(changed)} was given: drop those options, or train from scratch without "
                         f"{option('init_from')}.")
    return dataclasses.replace(options, **fixed)


def sized_by_tokenizer(options: TrainingOptions, size: int, user: TrainingOptions) -> TrainingOptions:
    """With `tokenizer` (of `size` tokens): the vocabulary size is the tokenizer's, recorded so; a different
    `vocab_size` the caller gave (`user`) is refused (it would be claimed in the run file and card, and not used)."""
    if user.vocab_size not in (None, size):
        raise ValueError(f"{option('tokenizer', options.tokenizer)} has {size} tokens, and "
                         f"{option('vocab_size', user.vocab_size)} asks for another vocabulary: a reused tokenizer "
                         f"brings its own. Drop {option('vocab_size')} (or give {option('vocab_size', size)}), or "
                         f"leave {option('tokenizer')} out to train a tokenizer of that size.")
    return dataclasses.replace(options, vocab_size=size)


def check_values(options: TrainingOptions, limit: LengthLimit | None) -> None:
    """Numbers that would fail only later (or train nothing): refused now. `limit`: the most positions the scheme
    takes (`position_limit`)."""
    # Each value's own type and range (positive counts, a finite learning rate, a seed set_seed takes) were checked
    # when the options were made (FIELD_CHECKS).
    if options.seq_len < 2:  # the loss would be NaN from the first step: nothing in a block to predict
        raise ValueError(f"--seq-len {options.seq_len}: the model learns to predict each token of a block from the "
                         f"tokens before it in the same block, so a block of one token has nothing to learn from. "
                         f"Give --seq-len 2 or more.")
    if limit is not None and options.seq_len > limit.positions:
        raise ValueError(f"--seq-len {options.seq_len} is above {limit.why}: use --seq-len <= {limit.positions}, or "
                         f"a scheme that runs at any length ({', '.join(unbounded_schemes())}).")


def training_dtype() -> torch.dtype:
    """The dtype a run computes in on this machine: bf16 on GPUs that have it, else fp16 on GPUs; float32 on CPU
    (bf16 there is slow without AMX units). `run.mixed_precision` asks the Trainer for it."""
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def position_limit(options: TrainingOptions, model: PosAttnConfig | None = None) -> LengthLimit | None:
    """The most positions a run of `options` may use, and why (`positional.length_limit`): of the model of
    `init_from` (`model`, its config) or of its preset's, in the dtype training computes in; None if it runs at any
    length."""
    where = f" in {options.init_from or f'preset {preset_of(options)!r}'}"
    return length_limit(run_config(options, model), training_dtype(), where)


def max_length(options: TrainingOptions, model: PosAttnConfig | None = None) -> int | None:
    """The longest input the scheme of `options` can take (`PositionScheme.max_length`) in the model of `init_from`
    (`model`, its config) or with its preset's table; None if it runs at any length."""
    return POSITION_SCHEMES[options.position].max_length(run_config(options, model))


def run_config(options: TrainingOptions, model: PosAttnConfig | None = None) -> PosAttnConfig:
    """The config of the model of `init_from` (`model`), else one with the preset's architecture for the scheme."""
    preset = PRESETS[preset_of(options)]
    return model or PosAttnConfig(
        position_embedding_type=options.position, hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers, num_attention_heads=preset.num_attention_heads,
        max_position_embeddings=preset.max_position_embeddings)
