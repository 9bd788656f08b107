"""The `posattn` command line (also `python -m hf_posattn`): train, generate, evaluate, draw, compare and share models.

Each subcommand is two functions and one entry in `COMMANDS`: `add_<name>(parser)` declares its options on the
parser it is given and sets `run=run_<name>`, and `run_<name>(args)` does the work and returns the exit status.
`main` parses first and imports after: only the chosen command's parser is built (the top-level help lists the
commands from `COMMANDS`), and a parser reads its choices and defaults from light modules (the presets, the options'
dataclasses, the scheme registry that `import hf_posattn` has loaded), so that `--help` imports no library the
package has not already imported; the work's imports (the Trainer, datasets, matplotlib) are inside `run_<name>`.
Option value types are in `cli_types.py`.

Bad input raises `ValueError` with a message that names the problem and the fix; `main` prints it as
`posattn <command>: error: ...` and exits with status 2, having changed nothing. This module is the top floor: it
parses, calls one command and prints; nothing imports it. Results go to stdout (with --json, the JSON alone);
progress and notices go to stderr.
"""

import argparse
import contextlib
import json
import os
import shlex
import sys

from .cli_types import (
    MAX_PLOTTED_DIMENSIONS,
    MAX_PLOTTED_POSITIONS,
    finite_float,
    int_list,
    json_object,
    plotted_dimensions,
    plotted_positions,
    positive_float,
    positive_int,
    scaling_factor,
    seed,
    seed_list,
    valid_text,
)
from huggingface_hub.errors import StrictDataclassError

from .common import MAX_NEW_TOKENS, Failed, Interrupted, on_command_line
from .files import resolve_output, resolve_path, resolve_source, write_failure


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help when it has one to show (not None, not a flag's False) and the help
    does not already say it; a list as the command line takes it (128,256,512)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default:" in (action.help or ""):
            return action.help
        if isinstance(action.default, (list, tuple)):
            return f"{action.help} (default: {shown(action.default)})"
        return super()._get_help_string(action)


def shown(value) -> str:
    """A default as the command line takes it: a list as `0,1,2`."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def add_rope_options(parser, applied_to: str) -> None:
    """--rope-scaling TYPE [--factor F], or --rope-parameters JSON: one of transformers' rotary variants applied to
    `applied_to` (rotary and xpos models), read by `rope_parameters`."""
    from transformers.modeling_rope_utils import (
        ROPE_INIT_FUNCTIONS,  # loaded with the model's schemes
    )

    group = parser.add_argument_group(
        "rotary context extension",
        f"apply one of transformers' rotary variants to {applied_to}, extending from the length it was trained at "
        f"(rotary and xpos models only)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--rope-scaling", choices=["default", *ROPE_INIT_FUNCTIONS], metavar="TYPE",
                        help=f"rope_type: {', '.join(['default', *ROPE_INIT_FUNCTIONS])} (llama3 and longrope take "
                             f"more parameters: use --rope-parameters)")
    choice.add_argument("--rope-parameters", type=json_object, metavar="JSON", dest="rope_json",
                        help='all of transformers\' rope_parameters, e.g. \'{"rope_type": "yarn", "factor": 4}\'')
    group.add_argument("--factor", type=scaling_factor, metavar="F",
                       help="with --rope-scaling: how many times the training length the inputs may reach")


def rope_parameters(args) -> dict | None:
    """The rope_parameters that --rope-scaling/--factor or --rope-parameters give, or None; checked before any
    work."""
    if args.factor is not None and args.rope_scaling is None:
        raise ValueError(f"--factor {args.factor:g} scales a rotary variant: give it with --rope-scaling TYPE (e.g. "
                         f"--rope-scaling yarn --factor {args.factor:g}).")
    if args.rope_scaling is None:
        return args.rope_json
    given = {"rope_type": args.rope_scaling}
    if args.factor is not None:
        given["factor"] = args.factor
    return given


# Where every command that draws writes its figure, said once (the top-level help; each --output points here) and
# done once (`figure_path`).
WHERE_FIGURES_GO = ("Figures: a command that draws writes the PNG that --output names; without --output, its NAME.png "
                    "goes into the folder of the one model it draws (beside the model's card and training.png), and "
                    "into the current folder when it draws no saved model (plot-positions without DIR; demo lookup, "
                    "parallel, and context without --output-dir) or several (plot-training of several runs).")


def figure_path(output: str | None, folder: str | None, name: str) -> str:
    """Where a command writes its figure (`WHERE_FIGURES_GO`): `--output` when given, else `name` in the `folder` of
    the one model it draws (a run folder admits it), else `name` here; its folder resolved, its name kept (a link of
    that name is refused, not followed)."""
    return resolve_output(output if output is not None else os.path.join(folder, name) if folder else name, "--output")


def add_output(parser, name: str) -> None:
    """The --output of a command that draws, its default `name` placed by the one rule (`WHERE_FIGURES_GO`)."""
    parser.add_argument("--output", metavar="FILE", help=f"the PNG to write (default: {name}, beside the model drawn, "
                                                         f"else here: see `posattn --help`)")


@contextlib.contextmanager
def json_alone_on_stdout(enabled: bool):
    """With --json, whatever the work prints (libraries' notices) goes to stderr, so that stdout holds the JSON
    alone."""
    with contextlib.redirect_stdout(sys.stderr) if enabled else contextlib.nullcontext():
        yield


# ---- train ----

def preset_values(name: str) -> str:
    from .training.options import PRESETS

    return "the preset's: " + ", ".join(f"{preset} {getattr(values, name):g}" for preset, values in PRESETS.items())


def add_run_options(parser, defaults: dict[str, str]) -> None:
    """The options of a training run that `train` and `compare` share (compare gives them to every run it trains),
    with the training run's defaults (`TrainingOptions`); `defaults` says what leaving out one that has no single
    default gives."""
    from .data.tasks import LANGUAGE_MODELLING, TASKS
    from .training.options import DEFAULT_PRESET, PRESETS, TASK_PRESET, TrainingOptions

    parser.add_argument("--task", choices=[LANGUAGE_MODELLING, *TASKS], default=TrainingOptions.task,
                        help=f"{LANGUAGE_MODELLING}: language modelling on --data; or a synthetic task that needs a "
                             f"token far back, with its own words: " + "; ".join(
                                 f"{name}: {task.description}" for name, task in TASKS.items()))
    parser.add_argument("--preset", choices=list(PRESETS),
                        help="model size and budget: " + "; ".join(f"{name}: {preset.description}"
                                                                   for name, preset in PRESETS.items())
                             + f" (default: {DEFAULT_PRESET} for {LANGUAGE_MODELLING}, {TASK_PRESET} for a synthetic "
                               f"--task)")
    parser.add_argument("--data", nargs="+", metavar="SOURCE",
                        help="text files (UTF-8), or one `datasets` dataset: a Hub name, a folder, or "
                             ".json/.jsonl/.csv/.parquet files (default: the embedded corpus)")
    parser.add_argument("--text-column", metavar="NAME", default=TrainingOptions.text_column,
                        help="the text column of a dataset")
    for flag, name, kind, metavar, meaning in (
            ("--seq-len", "seq_len", positive_int, "L", "tokens per training block, the training length"),
            ("--max-steps", "max_steps", positive_int, "N", "optimizer steps"),
            ("--batch-size", "batch_size", positive_int, "N", "blocks per step and device"),
            ("--learning-rate", "learning_rate", positive_float, "LR", "peak learning rate"),
            ("--vocab-size", "vocab_size", positive_int, "N", "tokens in the BPE vocabulary")):
        parser.add_argument(flag, type=kind, metavar=metavar, help=f"{meaning} (default: {defaults[name]})")
    parser.add_argument("--scale-embeddings", action="store_true", default=TrainingOptions.scale_embeddings,
                        help="the setup of Vaswani et al. and fairseq: token embeddings times sqrt(hidden size), "
                             "sinusoidal waves at amplitude 1 (default: off; waves at the embeddings' starting scale)")
    parser.add_argument("--random-positions", type=positive_int, metavar="N",
                        help="randomized positions (Ruoss et al. 2023): each training batch reads an ordered random "
                             "subset of [0, N) as its positions, N at least the longest evaluation length; "
                             "evaluation reads 0, 1, 2, ... (default: off)")
    parser.add_argument("--report-to", nargs="+", metavar="NAME", default=TrainingOptions.report_to,
                        help="log the run with the Trainer's integrations (tensorboard, wandb, mlflow, trackio, ...: "
                             "a name it does not know is refused with the list); 'all' for every one installed. "
                             "TensorBoard writes to OUTPUT_DIR/runs (view with: tensorboard --logdir OUTPUT_DIR/runs)")


def add_train(parser):
    from .model.positional import POSITION_EMBEDDING_TYPES
    from .training.options import DEFAULT_OUTPUT_DIR, EVALUATIONS, TrainingOptions

    parser.description = ("Train a byte-level BPE tokenizer and an hf_posattn model with the Hugging Face Trainer, "
                          "then save model, tokenizer, code, model card and training.png in --output-dir and print "
                          "the validation perplexity, the unigram baseline and a sample. With --resume, an option "
                          "left out is the one the run was started with; with --init-from, the options its model "
                          "fixes are the model's.")
    parser.add_argument("--position", choices=POSITION_EMBEDDING_TYPES, default=TrainingOptions.position,
                        help="position scheme")
    add_run_options(parser, {"seq_len": preset_values("seq_len"), "batch_size": preset_values("batch_size"),
                             "max_steps": preset_values("max_steps") + "; may change on --resume",
                             "learning_rate": preset_values("learning_rate"),
                             "vocab_size": preset_values("vocab_size") + "; with --tokenizer or --init-from, theirs"})
    parser.add_argument("--grad-accum", type=positive_int, metavar="N", dest="gradient_accumulation_steps",
                        default=TrainingOptions.gradient_accumulation_steps,
                        help="batches accumulated per optimizer step")
    parser.add_argument("--tokenizer", metavar="DIR", help="reuse the tokenizer in DIR instead of training one")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start from the model in DIR (its weights, architecture and tokenizer) instead of a new "
                             "one: a fine-tune, e.g. at a longer --seq-len with --rope-scaling")
    output_dir = DEFAULT_OUTPUT_DIR.format(preset="PRESET", position="POSITION")
    parser.add_argument("--output-dir", metavar="DIR", help=f"where to save (default: {output_dir})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir from its last "
                                                              "checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace the model or run in --output-dir")
    parser.add_argument("--seed", type=seed, metavar="N", default=TrainingOptions.seed, help="random seed")
    parser.add_argument("--eval-steps", type=positive_int, metavar="N",
                        help=f"steps between evaluations (default: 1/{EVALUATIONS} of the steps)")
    parser.add_argument("--save-steps", type=positive_int, metavar="N",
                        help="steps between checkpoints (default: --eval-steps)")
    parser.add_argument("--sample-prompt", type=valid_text, metavar="TEXT",
                        help="prompt of the sample printed at the end (default: the first speaker's cue, or first "
                             "line, of the validation text)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or training log lines")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (alone on stdout)")
    add_rope_options(parser, "the model of --init-from")
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    from accelerate import PartialState

    from .training.options import TrainingOptions
    from .training.run import train

    args.rope_parameters = rope_parameters(args)
    options = TrainingOptions(**{name: getattr(args, name) for name in TrainingOptions.__dataclass_fields__})
    with json_alone_on_stdout(args.json):
        result = train(options)
    if not PartialState().is_main_process:  # under torchrun or accelerate launch: the main process reports
        return 0
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"\nvalidation loss {result.eval_loss:.4f}, perplexity {result.perplexity:.2f} on all the validation text "
          f"(unigram baseline: loss {result.unigram_loss:.4f}, perplexity {result.unigram_perplexity:.2f})")
    print(f"{result.steps} steps, {result.tokens_seen:,} tokens seen, {result.train_seconds / 60:.1f} min of "
          f"training, {result.wall_seconds / 60:.1f} min in all, on {result.hardware}")
    print(f"\nsample:\n{result.sample}\n")
    print(f"saved model, tokenizer, code and model card in {result.output_dir}")
    return 0


# ---- generate, evaluate, push ----

def add_generate(parser):
    parser.description = ("Continue PROMPT with the model in DIR (the text-generation pipeline), printing tokens as "
                          "they come.")
    parser.add_argument("dir", help="a model folder written by `posattn train`")
    parser.add_argument("prompt", type=valid_text, help="the text to continue")
    parser.add_argument("--max-new-tokens", type=positive_int, default=MAX_NEW_TOKENS, metavar="N",
                        help="tokens to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=finite_float, metavar="T",
                        help="below 1 sharper, above 1 more random (default: the model's generation config)")
    parser.add_argument("--top-p", type=finite_float, metavar="P",
                        help="sample from the smallest set of tokens whose probabilities add up to P (default: the "
                             "model's generation config)")
    parser.add_argument("--top-k", type=positive_int, metavar="K", help="sample from the K most likely tokens only "
                                                                        "(default: the model's generation config)")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely token (no sampling)")
    parser.add_argument("--seed", type=seed, default=0, metavar="N", help="random seed of the sampling")
    add_rope_options(parser, "the model for this text")
    parser.set_defaults(run=run_generate)


def run_generate(args) -> int:
    from .sharing.generation import generate_text
    from .sharing.loading import load_model

    if not args.greedy and args.temperature is not None and args.temperature <= 0:
        raise ValueError(f"--temperature {args.temperature} must be above 0 (or use --greedy).")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p {args.top_p} must be in (0, 1].")
    model, tokenizer = load_model(resolve_path(args.dir, "DIR"), rope_parameters=rope_parameters(args))
    generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                  top_p=args.top_p, top_k=args.top_k, greedy=args.greedy, seed=args.seed, stream=True)
    return 0


def add_evaluate(parser):
    from .training.options import EVAL_BATCH_TOKENS
    from .training.options import TrainingOptions

    parser.description = ("Perplexity of the model in DIR on the validation text, in windows of each length "
                          "(non-overlapping, or sliding with --stride), next to the unigram baseline; JSON to stdout "
                          "or --output. Learned positions are not evaluated past their maximum: such lengths are "
                          "listed as skipped, with the reason. A synthetic task's model is refused (it has no words "
                          "for text; `posattn compare --task TASK` scores the exact match of its answers).")
    parser.add_argument("dir", help="a model folder written by `posattn train`")
    parser.add_argument("--lengths", type=int_list, default=[128, 256, 512], metavar="L1,L2,...",
                        help="evaluation lengths, in tokens")
    parser.add_argument("--stride", type=positive_int, metavar="N", help="sliding windows: score only the last N "
                                                                         "tokens of each window (default: "
                                                                         "non-overlapping windows)")
    parser.add_argument("--data", nargs="+", metavar="SOURCE", help="as for `train`: its validation split is "
                                                                    "evaluated (default: the embedded corpus)")
    parser.add_argument("--text-column", metavar="NAME", default=TrainingOptions.text_column,
                        help="the text column of a dataset")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help=f"windows per forward pass (default: {EVAL_BATCH_TOKENS} tokens' worth)")
    parser.add_argument("--output", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_rope_options(parser, "the model for this evaluation (the JSON records the rope_parameters used)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from .common import notice
    from .data.corpus import load_texts
    from .data.tasks import LANGUAGE_MODELLING, made_for, made_for_text
    from .data.unigram import text_unigram_baseline, token_stream
    from .files import write_json
    from .model.positional import POSITION_SCHEMES
    from .sharing.loading import load_model
    from .study.perplexity import evaluate_lengths_of_ids
    from .runfolder import check_output_file

    scaling = rope_parameters(args)
    folder = resolve_path(args.dir, "DIR")
    data = None if args.data is None else [resolve_source(source, "--data") for source in args.data]
    output = None if args.output is None else resolve_output(args.output, "--output")
    if output:  # checked before the work rather than found wrong after it
        check_output_file(output)
    model, tokenizer = load_model(folder, rope_parameters=scaling)
    tasks = made_for(tokenizer)
    if tasks != (LANGUAGE_MODELLING,):  # its perplexity on text would be one of <unk> tokens
        raise ValueError(f"{folder} holds a model of {made_for_text(tasks)}, which knows that task's words only: "
                         f"evaluate scores a language model's perplexity on text. A task's model is scored by the "
                         f"exact match of its answers, as `posattn compare --task {tasks[0]}` does for its runs; "
                         f"`posattn generate {args.dir} PROMPT --greedy` shows its answer to a prompt in its words.")
    texts = load_texts(data, args.text_column)
    validation = list(texts["validation"]["text"])
    validation_ids = token_stream(tokenizer, validation)
    scheme = model.config.position_embedding_type
    report = {
        "model": folder,
        "position_embedding_type": scheme,
        # What the rotation used, scaled or as trained (None: the scheme has no rotary parameters).
        "rope_parameters": model.config.rope_parameters
        if "rope_parameters" in POSITION_SCHEMES[scheme].config_fields else None,
        "data": " ".join(data) if data else "embedded corpus",
        "tokens": len(validation_ids),
        "unigram_baseline": text_unigram_baseline(tokenizer, texts["train"]["text"], validation),
        "results": evaluate_lengths_of_ids(model, validation_ids, args.lengths, args.stride, args.batch_size,
                                           progress=not args.quiet),
    }
    if output:
        write_json(output, report)
        notice(f"wrote {output}")
    else:
        print(json.dumps(report, indent=2))
    return 0


def add_push(parser):
    parser.description = ("Upload the model folder DIR to the Hub repo REPO_ID in one commit (created if needed). "
                          "Offline or without a token it fails with a clear message and changes nothing.")
    parser.add_argument("dir", help="a model folder written by `posattn train`")
    parser.add_argument("repo_id", help="user-or-org/name")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--token", help="Hub token (default: the one from `hf auth login` or HF_TOKEN)")
    parser.add_argument("--message", default="Upload hf_posattn model", help="commit message")
    parser.set_defaults(run=run_push)


def run_push(args) -> int:
    from .sharing.hub import push

    url = push(resolve_path(args.dir, "DIR"), args.repo_id, private=args.private, token=args.token,
               commit_message=args.message)
    print(f"pushed {args.dir} to {url}")
    return 0


# ---- figures ----

def add_plot_positions(parser):
    from .runfolder import POSITIONS_FIGURE

    parser.description = ("Draw the sinusoidal position encoding: a heat map of position x dimension, a few of its "
                          "waves, and the dot product between positions. Given a model folder, also its learned "
                          "table (or its sinusoidal waves against its token embeddings, rotary frequencies, ALiBi "
                          "slopes) next to the closed form.")
    parser.add_argument("dir", nargs="?", help="a model folder written by `posattn train` (optional)")
    add_output(parser, POSITIONS_FIGURE)
    parser.add_argument("--positions", type=plotted_positions, default=128, metavar="N",
                        help=f"positions to draw (at most {MAX_PLOTTED_POSITIONS})")
    parser.add_argument("--dim", type=plotted_dimensions, metavar="D",
                        help=f"dimensions of the closed form, even, at most {MAX_PLOTTED_DIMENSIONS} (default: the "
                             f"model's hidden size, else 128)")
    parser.set_defaults(run=run_plot_positions)


def run_plot_positions(args) -> int:
    from .figures.common import pyplot
    from .figures.positions import plot_positions
    from .sharing.loading import load_model
    from .runfolder import POSITIONS_FIGURE, check_output_file

    pyplot()  # fails now, before loading a model, if matplotlib is missing
    folder = None if args.dir is None else resolve_path(args.dir, "DIR")
    output = figure_path(args.output, folder, POSITIONS_FIGURE)
    check_output_file(output, example=POSITIONS_FIGURE)
    model = load_model(folder)[0] if folder is not None else None
    print(f"wrote {plot_positions(output, model, args.positions, args.dim)}")
    return 0


def add_plot_attention(parser):
    from .figures.attention import MAX_ATTENTION_TOKENS
    from .runfolder import ATTENTION_FIGURE

    parser.description = ("Run the model in DIR on TEXT with output_attentions=True and draw its attention weights "
                          "as heat maps, one per layer (rows) and head (columns), with the tokens on both axes.")
    parser.add_argument("dir", help="a model folder written by `posattn train`")
    parser.add_argument("text", type=valid_text, help="the text to look at")
    add_output(parser, ATTENTION_FIGURE)
    parser.add_argument("--layer", type=int, metavar="N", help="only this layer (from 0)")
    parser.add_argument("--head", type=int, metavar="N", help="only this head of each layer (from 0)")
    parser.add_argument("--max-tokens", type=positive_int, default=MAX_ATTENTION_TOKENS, metavar="N",
                        help="longest text, in tokens")
    parser.add_argument("--html", metavar="FILE", help="also write bertviz's interactive head view to FILE "
                                                       "(needs bertviz: pip install \"hf-posattn[html]\")")
    parser.set_defaults(run=run_plot_attention)


def run_plot_attention(args) -> int:
    from .figures.attention import attention_weights, import_head_view, plot_attention, write_head_view
    from .figures.common import pyplot
    from .sharing.loading import load_model
    from .runfolder import ATTENTION_FIGURE, check_output_file

    pyplot()  # missing optional dependencies fail now, before any work
    folder = resolve_path(args.dir, "DIR")
    output = figure_path(args.output, folder, ATTENTION_FIGURE)
    check_output_file(output, example=ATTENTION_FIGURE)
    html = None if args.html is None else resolve_output(args.html, "--html")
    if html:
        import_head_view()
        check_output_file(html, "--html", example="attention.html")
    model, tokenizer = load_model(folder, attn_implementation="eager")
    weights, labels = attention_weights(model, tokenizer, args.text, args.max_tokens)
    print(f"wrote {plot_attention(output, weights, labels, args.layer, args.head)}")
    if html:
        print(f"wrote {write_head_view(html, weights, labels)}")
    return 0


def add_plot_training(parser):
    from .runfolder import TRAINING_FIGURE

    parser.description = ("Draw what the Trainer logged during each run in DIR (its trainer_state.json, else its "
                          "last checkpoint's): training and validation loss against tokens seen, the learning rate "
                          "below, and the unigram baseline; one colour per run.")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run folders written by `posattn train`")
    add_output(parser, TRAINING_FIGURE)
    parser.set_defaults(run=run_plot_training)


def run_plot_training(args) -> int:
    from .figures.common import pyplot
    from .figures.training import plot_training, run_label
    from .runfolder import TRAINING_FIGURE, check_output_file
    from .runfolder import read_log_history, recorded_baseline

    pyplot()  # fails now if matplotlib is missing
    folders = {given: resolve_path(given, "DIR") for given in args.dirs}  # labelled as given, read as resolved
    if len(set(folders.values())) < len(args.dirs):
        raise ValueError(f"a run folder is given twice ({' '.join(args.dirs)}): give each once.")
    output = figure_path(args.output, next(iter(folders.values())) if len(folders) == 1 else None, TRAINING_FIGURE)
    check_output_file(output, example=TRAINING_FIGURE)  # a folder, or under a file: refused before any drawing
    runs = {run_label(given, folder): read_log_history(folder) for given, folder in folders.items()}  # all read first
    baselines = {run_label(given, folder): recorded_baseline(folder) for given, folder in folders.items()}
    plot_training(output, runs, baseline={label: loss for label, loss in baselines.items() if loss is not None})
    print(f"wrote {output}")
    return 0


# ---- demo ----

def add_demo(parser):
    from .lesson.parallel import (
        BACKENDS,
        DEFAULT_BACKEND,
        DEFAULT_BATCH,
        DEFAULT_DEVICE,
        DEFAULT_HIDDEN,
        DEFAULT_LENGTHS,
        DEFAULT_REPEATS,
    )
    from .model.configuration_posattn import DEFAULT_POSITION
    from .model.positional import POSITION_EMBEDDING_TYPES

    parser.description = ("lookup: attention as a dictionary lookup (one-hot vectors, softmax temperature, blends). "
                          "context: a tiny model learns that 'not like' says 'hate' and 'do like' says 'like', and "
                          "looks at the deciding word. parallel: one attention layer against a GRU of the same width, "
                          "timed on this machine at growing lengths: all positions at once against T steps in a row, "
                          "and the T² cost attention pays for it. Each prints what it shows and writes a figure.")
    parser.add_argument("name", choices=["lookup", "context", "parallel"], help="which demo")
    add_output(parser, "NAME.png")
    parser.add_argument("--output-dir", metavar="DIR", help="context: keep the trained model in DIR (default: a "
                                                            "temporary folder)")
    parser.add_argument("--overwrite", action="store_true", help="context: replace the model in --output-dir")
    parser.add_argument("--position", choices=POSITION_EMBEDDING_TYPES, default=DEFAULT_POSITION,
                        help="context: the model's position scheme (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=200, metavar="N", help="context: training steps")
    parser.add_argument("--seed", type=seed, default=0, metavar="N", help="context: random seed")
    group = parser.add_argument_group("parallel")
    group.add_argument("--lengths", type=int_list, default=list(DEFAULT_LENGTHS), metavar="T1,T2,...",
                       help="sequence lengths, powers of two")
    group.add_argument("--hidden", type=positive_int, default=DEFAULT_HIDDEN, metavar="H", help="width of both layers")
    group.add_argument("--heads", type=positive_int, metavar="N", help="attention heads (default: hidden // 64)")
    group.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, metavar="N", help="sequences per call")
    group.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, metavar="N",
                       help="timed calls per length and model, after one warm-up; the median is shown")
    group.add_argument("--device", default=DEFAULT_DEVICE, help="cpu, cuda, cuda:N or mps (default: %(default)s)")
    group.add_argument("--attn-implementation", choices=BACKENDS, default=DEFAULT_BACKEND,
                       help="the attention backend (default: %(default)s)")
    group.add_argument("--backward", action="store_true", help="time forward + backward (default: forward only)")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="CPU threads (default: torch's setting, one per core); on a machine busy with other "
                            "programs, 1 gives steadier timings")
    parser.set_defaults(run=run_demo)


def run_demo(args) -> int:
    from .figures.common import pyplot
    from .lesson.context import context_demo
    from .lesson.lookup import lookup_demo
    from .lesson.parallel import parallel_demo
    from .runfolder import check_output_file

    pyplot()
    output_dir = None if args.output_dir is None else resolve_path(args.output_dir, "--output-dir")
    output = figure_path(args.output, output_dir if args.name == "context" else None, f"{args.name}.png")
    check_output_file(output, example=f"{args.name}.png")
    if args.name == "lookup":
        lookup_demo(output)
        return 0
    if args.name == "parallel":
        parallel_demo(output, args.lengths, args.hidden, args.heads, args.batch, args.repeats, args.device,
                      args.attn_implementation, args.backward, args.threads)
        return 0
    result = context_demo(output, output_dir, args.position, args.steps, args.seed, args.overwrite)
    return 0 if not result["wrong"] else 1


# ---- compare ----

def study_values(name: str) -> str:
    from .study.options import STUDIES

    default, quick = (shown(STUDIES[study][name]) for study in ("default", "quick"))
    return default if default == quick else f"{default}; --quick {quick}"


def add_compare(parser):
    from .model.positional import POSITION_EMBEDDING_TYPES
    from .study.options import STUDIES, CompareOptions

    default, quick = STUDIES["default"], STUDIES["quick"]
    parser.description = (
        "Train one model per position scheme (and seed) with the same budget, data, tokenizer and seed at length L, "
        "evaluate each at L, 2L, 4L, 8L in non-overlapping windows on the same validation tokens, and write "
        "compare.csv, compare.json, compare.md, compare.png (perplexity against length; with several seeds the mean "
        "and its 95 % Student t interval) and compare-positions.png (the loss at each position of the longest "
        "window) in --output-dir. Rotary-type schemes get rows for linear interpolation, dynamic NTK and YaRN from "
        f"the same trained model. Default: the {len(default['positions'])} built-in schemes, L = "
        f"{default['seq_len']}, {default['max_steps']} steps of {default['batch_size']} blocks, "
        f"{default['eval_tokens']:,} evaluation tokens; --quick: the {len(quick['positions'])} schemes Press et al. "
        f"compared ({', '.join(quick['positions'])}), L = {quick['seq_len']}, {quick['max_steps']} steps, "
        f"{quick['eval_tokens']:,} evaluation tokens. With --task TASK (passkey, recall, copy, reverse) the same "
        f"study trains on a synthetic task that needs a token far back and scores the exact match of the greedily "
        f"decoded answers at each length instead (the task preset's budget; in runs/compare-TASK[-quick]). Finished "
        f"runs with the same options are reused; their checkpoints are removed (the models stay).")
    parser.add_argument("--quick", action="store_true",
                        help=f"the small study: {len(quick['positions'])} schemes, L = {quick['seq_len']}, "
                             f"{quick['max_steps']} steps")
    parser.add_argument("--positions", nargs="+", choices=POSITION_EMBEDDING_TYPES, metavar="SCHEME",
                        help=f"schemes to compare (default: the {len(default['positions'])} built-in; --quick: "
                             f"{' '.join(quick['positions'])})")
    parser.add_argument("--seeds", type=seed_list, metavar="S1,S2,...", default=CompareOptions.seeds,
                        help="one run per scheme and seed; the table shows the mean and its 95 %% interval")
    parser.add_argument("--factors", type=int_list, metavar="F1,F2,...", default=CompareOptions.factors,
                        help="evaluation lengths as multiples of L")
    add_run_options(parser, {"seq_len": study_values("seq_len"), "max_steps": study_values("max_steps"),
                             "batch_size": study_values("batch_size"), "learning_rate": preset_values("learning_rate"),
                             "vocab_size": preset_values("vocab_size")})
    parser.add_argument("--eval-tokens", type=positive_int, metavar="N",
                        help=f"validation tokens scored at every length (default: {study_values('eval_tokens')})")
    parser.add_argument("--output-dir", metavar="DIR",
                        help=f"where the runs and tables go (default: {study_values('output_dir')})")
    parser.add_argument("--overwrite", action="store_true", help="train every run again, replacing what is there")
    parser.add_argument("--jobs", type=positive_int, metavar="N", default=CompareOptions.jobs,
                        help="runs at once on this machine, each in its own process with 1/N of the CPU threads, or "
                             "a GPU of its own where the machine has GPUs (round robin: more runs than GPUs share "
                             "them); each run's output in DIR/logs/ (default: %(default)s, one after another in this "
                             "process)")
    slurm = parser.add_argument_group(
        "Slurm", "each run a job of one job array, submitted through submitit (pip install \"hf-posattn[slurm]\"). "
                 "--output-dir must be on a file system the cluster's nodes share (not /tmp): the jobs read and write "
                 "the study there, their logs in DIR/slurm/. A job that reaches its time limit or is preempted is "
                 "requeued and continues from its last checkpoint. Ctrl-C leaves the jobs running; the same command "
                 "waits for them and gathers the study.")
    slurm.add_argument("--slurm", action="store_true", dest="use_slurm", help="run every run as a Slurm job")
    slurm.add_argument("--partition", metavar="NAME", help="the partition (default: the cluster's)")
    slurm.add_argument("--time-limit", type=positive_int, metavar="MINUTES", default=60,
                       help="each job's time limit, in minutes (default: %(default)s)")
    slurm.add_argument("--gpus-per-run", type=int, metavar="N", default=0, help="GPUs per job (default: %(default)s)")
    slurm.add_argument("--cpus-per-run", type=positive_int, metavar="N", default=1,
                       help="CPUs per job, the run's torch threads (default: %(default)s)")
    slurm.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option by its long name, e.g. account=abc or qos=high (repeatable)")
    slurm.add_argument("--no-wait", action="store_false", dest="wait",
                       help="submit the jobs and return; the same command later waits for what still runs and "
                            "gathers the study")
    parser.add_argument("--json", action="store_true", help="print the study as JSON instead of the table")
    parser.set_defaults(run=run_compare, slurm=None)


def run_compare(args) -> int:
    from .study.options import CompareOptions
    from .study.kind import markdown_table
    from .study.run import compare

    args.slurm = slurm_options(args)
    options = CompareOptions(**{name: getattr(args, name) for name in CompareOptions.__dataclass_fields__})
    with json_alone_on_stdout(args.json):
        study = compare(options, command=args.command_line)
    if study is None:  # --no-wait: submitted, not gathered
        return 0
    if args.json:
        print(json.dumps(study, indent=2))
        return 0
    print(f"\n{markdown_table(study)}\n")
    folder = study["settings"]["output_dir"]
    written = sorted(name for name in os.listdir(folder) if name.startswith("compare"))
    print(f"{study['wall_seconds'] / 60:.1f} min on {study['hardware']}; wrote {', '.join(written)} in {folder}")
    return 0


def slurm_options(args):
    """The Slurm options of `compare`, with --slurm; without it, a Slurm option given is refused (it would be
    ignored)."""
    from .study.slurm import SlurmOptions, parse_extra

    given = [flag for flag, value, default in (("--partition", args.partition, None), ("--time-limit", args.time_limit, 60),
                                                ("--gpus-per-run", args.gpus_per_run, 0),
                                                ("--cpus-per-run", args.cpus_per_run, 1),
                                                ("--slurm-option", args.slurm_option, [])) if value != default]
    if not args.use_slurm:
        if given:
            raise ValueError(f"{', '.join(given)} set how Slurm runs the study: add --slurm, or drop them.")
        return None
    return SlurmOptions(partition=args.partition, time_min=args.time_limit, gpus_per_run=args.gpus_per_run,
                        cpus_per_run=args.cpus_per_run, extra=parse_extra(args.slurm_option))


# ---- convert ----

def add_convert(parser):
    parser.description = ("Convert the GPT-2 checkpoint in SRC (a folder or Hub id of a GPT2LMHeadModel) into an "
                          "hf_posattn model with learned positions that computes the same function, saved in DST "
                          "with its tokenizer.")
    parser.add_argument("src", help="folder (or Hub id) of a GPT2LMHeadModel")
    parser.add_argument("dst", help="output folder for the hf_posattn model")
    parser.add_argument("--overwrite", action="store_true", help="replace the model DST holds")
    parser.set_defaults(run=run_convert)


def run_convert(args) -> int:
    from .sharing.convert import convert

    convert(args.src, args.dst, args.overwrite)
    return 0


# ---- the command line ----

# Each command: the function that declares its options, and the line the top-level help shows for it.
COMMANDS = {
    "train": (add_train, "train a model from scratch (default: the embedded Shakespeare corpus)"),
    "generate": (add_generate, "continue a prompt with a trained model, streaming the text"),
    "evaluate": (add_evaluate, "perplexity on held-out text at several lengths (JSON)"),
    "push": (add_push, "push model, tokenizer, code and card to the Hugging Face Hub"),
    "plot-positions": (add_plot_positions, "draw the sinusoidal encoding, and what a trained model's position scheme "
                                           "holds (PNG)"),
    "plot-attention": (add_plot_attention, "draw the attention weights of a model on a text (PNG; HTML with "
                                           "bertviz)"),
    "plot-training": (add_plot_training, "draw the training and validation loss and learning rate of one or more "
                                         "runs (PNG)"),
    "demo": (add_demo, "the lesson on attention, runnable: `lookup`, `context` and `parallel`"),
    "compare": (add_compare, "length extrapolation: one model per position scheme, perplexity at L, 2L, 4L, 8L"),
    "convert": (add_convert, "a GPT-2 checkpoint as an hf_posattn model (same outputs)"),
}
EVERY_COMMAND = "every"


def build_parser(command: str | None = EVERY_COMMAND) -> argparse.ArgumentParser:
    """The parser of `posattn`, with the options of `command` (every command's by default; None: none, for the
    top-level help and a command that does not exist)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="posattn",
        description="Train, sample, evaluate and share hf_posattn language models (position scheme: one switch).",
        epilog=WHERE_FIGURES_GO,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, summary) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary, formatter_class=HelpFormatter)
        if command in (name, EVERY_COMMAND):
            add(subparser)
    return parser


def chosen_command(arguments: list[str]) -> str | None:
    """The command `arguments` name (the first word that is not an option: `posattn` has no option that takes a
    value), if it is one."""
    word = next((argument for argument in arguments if not argument.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(arguments)).parse_args(arguments)
    args.command_line = shlex.join(["posattn", *arguments])  # for the records
    try:
        with on_command_line():  # messages name options as this command's flags
            return args.run(args)
    except Interrupted as interrupted:  # what was done stays; the message says how to continue
        print(f"\nposattn {args.command}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\nposattn {args.command}: interrupted.", file=sys.stderr)
        return 130
    except (ValueError, StrictDataclassError) as error:  # bad input; a config field's validator raises the latter
        print(f"posattn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Failed as failed:  # some of the work failed; the message says what stays and what to do
        print(f"posattn {args.command}: error: {failed}", file=sys.stderr)
        return 1
    except Exception as error:  # the machine's refusals (a full disk, a permission): said, not a traceback
        reason = write_failure(error)  # OSError, and safetensors' and torch.save's failures to write
        if reason is None:
            raise
        print(f"posattn {args.command}: error: {error if isinstance(error, OSError) else reason}", file=sys.stderr)
        return 1
