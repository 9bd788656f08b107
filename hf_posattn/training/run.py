"""Train an hf_posattn language model from scratch with the Hugging Face `Trainer`.

    from hf_posattn import TrainingOptions, train
    result = train(TrainingOptions(position="alibi", output_dir="runs/alibi"))
    print(result.perplexity, result.unigram_perplexity)

One call does the whole job: text (the embedded corpus by default), a byte-level BPE tokenizer, packed blocks of
`seq_len` tokens, the model of a preset, the `Trainer` (AdamW, warm-up then cosine decay, periodic evaluation,
checkpoints, bf16/fp16 on GPUs that support it), then the final model, tokenizer, code and model card saved in
`output_dir`, the validation perplexity next to the unigram baseline, and a sample. The same options with the same
seed train the same model, so runs that differ only in `position` compare the position schemes.

`train` is the sequence of phases: plan (plan.py: the options resolved and the files read, once), claim the folder
(folder.py), tokens, trainer, fit, finish; each phase takes the plan, and none goes back to it.
"""

import contextlib
import dataclasses
import math
import os
import time

import numpy as np
import torch
from datasets import DatasetDict
from transformers import AutoTokenizer, Trainer, TrainingArguments, default_data_collator, set_seed
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER
from transformers.trainer_utils import TrainOutput

from .. import arguments
from ..common import MAX_NEW_TOKENS, hardware, notice, progress_bars
from ..data.tasks import training_recipe
from ..data.unigram import text_unigram_baseline
from ..figures.training import write_training_figure
from ..files import WriteFailed, saved_whole, write_with, writing
from ..model.configuration_posattn import PosAttnConfig
from ..model.modeling_posattn import PosAttnForCausalLM
from ..runfolder import RunPlan, claim, last_complete_checkpoint, remove_checkpoints, run_name, write_run_file
from ..sharing.card import write_model_card
from ..sharing.generation import generate_text
from .callbacks import (
    NormalModes,
    NothingLeftToTrain,
    ProgressFile,
    StopAtMaxSteps,
    StopOnCtrlC,
    StopOnNonFinite,
    show_logs_as_lines,
)
from .options import EVAL_BATCH_TOKENS, PRESETS, TrainingOptions, training_dtype
from .outcomes import TrainingDiverged, TrainingInterrupted, TrainingResult, TrainingWriteFailed
from .plan import TrainingPlan, plan_training
from .positions import RandomPositions

# Evaluation during training uses at most this many validation blocks, evenly spread: quicker, and a little off the
# result, which the evaluation after training gives on all of them (the log lines say which is which: LogLines).
PERIODIC_EVAL_BLOCKS = 256


def model_config(plan: TrainingPlan, tokenizer) -> PosAttnConfig:
    """The config of a new model of the preset, with the tokenizer's vocabulary and special tokens."""
    options = plan.options
    preset = PRESETS[options.preset]
    # A length-bounded scheme (learned) gets exactly the preset's table; the others run at any length, and their
    # tables (sinusoidal, rotary) are only a cache that should cover the training length.
    max_positions = preset.max_position_embeddings
    if plan.max_length is None:
        max_positions = max(max_positions, options.seq_len)
    return PosAttnConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        intermediate_size=4 * preset.hidden_size,
        initializer_range=preset.initializer_range,
        max_position_embeddings=max_positions,
        position_embedding_type=options.position,
        scale_embeddings=options.scale_embeddings,
        hidden_dropout_prob=preset.dropout,
        attention_probs_dropout_prob=preset.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def tokenizer_for(plan: TrainingPlan, args: TrainingArguments):
    """The tokenizer the plan reuses (of --tokenizer, --init-from or the run being resumed), else a new one trained
    on the training text by the main process, which the others read back from the run folder. Its `model_max_length`
    is the model's real limit, which transformers warns past ("... will result in indexing errors"): the table of a
    length-bounded scheme (learned), else none, as the other schemes run at any length."""
    if plan.tokenizer is not None:
        tokenizer = plan.tokenizer
    elif args.should_save or not plan.data.trains_tokenizer:
        tokenizer = plan.data.new_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(plan.folder.work_dir)
    tokenizer.model_max_length = plan.max_length or VERY_LARGE_INTEGER  # transformers' "no limit"
    return tokenizer


def evenly_spaced(dataset, count: int):
    if len(dataset) <= count:
        return dataset
    return dataset.select(np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist())


def mixed_precision() -> dict:
    """The Trainer's arguments for the dtype runs compute in here (`options.training_dtype`)."""
    return {torch.bfloat16: {"bf16": True}, torch.float16: {"fp16": True}}.get(training_dtype(), {})


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


@arguments.checked(options=arguments.instance(TrainingOptions))
def train(options: TrainingOptions) -> TrainingResult:
    """Train, evaluate, save and sample a model (see the module docstring). Raises `ValueError` on bad input, before
    any training; `TrainingInterrupted` when Ctrl-C stopped the run (after saving a checkpoint) and
    `TrainingDiverged` (a `ValueError`) when its loss or weights became NaN or infinite."""
    with progress_bars(not options.quiet):
        return train_run(options)


def train_run(options: TrainingOptions) -> TrainingResult:
    start = time.perf_counter()
    plan = plan_training(options)
    folder = plan.folder
    args = training_arguments(plan.options, folder.work_dir)
    # Under torchrun or accelerate launch this joins the run's other processes (one per device). Only the main process
    # writes to the output folder, as the Trainer decides it (`should_save`); it does so once every process has
    # planned the run, and the others then read the tokenizer it trained.
    args.distributed_state.wait_for_everyone()
    with contextlib.ExitStack() as owned:
        with args.main_process_first(local=args.save_on_each_node, desc="tokenizer"):
            tokenizer = tokenizer_for(plan, args)
            blocks = plan.data.blocks(tokenizer)
            if args.should_save:  # the folder is touched only now: bad input above leaves it as it was
                owned.enter_context(claim(folder))
                record_start(plan.options, folder, tokenizer)
        trainer = make_trainer(plan, args, tokenizer, blocks)
        train_output = fit(trainer, plan)
        return finish(trainer, plan, blocks, train_output, start)


def record_start(options: TrainingOptions, folder: RunPlan, tokenizer) -> None:
    """The run's tokenizer (which --resume reuses) and its options, results to come: an unfinished run."""
    with saved_whole(folder.work_dir, what=f"the tokenizer in {folder.work_dir}") as temporary:
        tokenizer.save_pretrained(temporary)
    write_run_file(folder.work_dir, dataclasses.asdict(options), None)


def make_trainer(plan: TrainingPlan, args: TrainingArguments, tokenizer, blocks: DatasetDict) -> Trainer:
    """The Trainer of the run: the model of `init_from` (read by the plan), else a new model of the preset. Its
    logs are shown as lines (`LogLines`), with its progress bars unless the run is quiet."""
    options = plan.options
    set_seed(options.seed)
    model = plan.initial_model if plan.initial_model is not None else PosAttnForCausalLM(model_config(plan, tokenizer))
    periodic = evenly_spaced(blocks["validation"], PERIODIC_EVAL_BLOCKS)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=blocks["train"],
        eval_dataset=periodic,
        data_collator=default_data_collator if options.random_positions is None else RandomPositions(
            options.random_positions, options.seed),
        processing_class=tokenizer,
    )
    show_logs_as_lines(trainer, quiet=plan.options.quiet, validation_blocks=(len(periodic), len(blocks["validation"])))
    return trainer


def fit(trainer: Trainer, plan: TrainingPlan):
    """`trainer.train`, from the plan's checkpoint on resume (the last whole one); stops cleanly on Ctrl-C, on NaN/inf
    and when a checkpoint cannot be written (a full disk)."""
    folder, checkpoint = plan.folder, plan.checkpoint
    if folder.resume:
        notice(f"resuming from {checkpoint}" if checkpoint else f"{folder.work_dir} has no checkpoint yet: starting "
                                                                f"at step 0")
    non_finite = StopOnNonFinite()
    trainer.add_callback(non_finite)
    trainer.add_callback(StopAtMaxSteps())
    trainer.add_callback(NormalModes())
    trainer.add_callback(ProgressFile())
    with StopOnCtrlC() as stop:
        trainer.add_callback(stop)
        try:
            with writing(f"a checkpoint in {folder.work_dir}"):  # safetensors' and torch.save's failures say so
                train_output = trainer.train(resume_from_checkpoint=checkpoint)
        except NothingLeftToTrain:
            train_output = TrainOutput(trainer.state.global_step, 0.0, {"train_runtime": 0.0})
        except WriteFailed as failure:
            raise TrainingWriteFailed(folder.target, failure) from failure
    if non_finite.found:
        step, what = non_finite.found
        raise TrainingDiverged(folder.target, step, what, plan.options.learning_rate,
                               last_complete_checkpoint(folder.work_dir))
    if stop.interrupted:
        raise TrainingInterrupted(folder.target, last_complete_checkpoint(folder.work_dir))
    return train_output


def finish(trainer: Trainer, plan: TrainingPlan, blocks: DatasetDict, train_output, start: float) -> TrainingResult:
    """Evaluate on the whole validation split, save the model whole, sample it, then record the results: the figure,
    the card, and the run file last (a run without results is an unfinished one)."""
    options, folder, texts = plan.options, plan.folder, plan.data.texts
    args, model, tokenizer = trainer.args, trainer.model, trainer.processing_class
    if args.should_save:  # trainer_state.json in the run folder, for its training figure (checkpoints may go)
        write_with(os.path.join(folder.work_dir, "trainer_state.json"), trainer.state.save_to_json)
    eval_loss = trainer.evaluate(blocks["validation"])["eval_loss"]
    baseline = text_unigram_baseline(tokenizer, texts["train"]["text"], texts["validation"]["text"])
    # How the model samples unless told otherwise (`posattn generate`, the pipeline, `generate`); top_k=0: no top-k
    # cut, which transformers would otherwise apply at 50 tokens.
    model.generation_config.update(do_sample=True, temperature=0.8, top_p=0.95, top_k=0, max_new_tokens=MAX_NEW_TOKENS,
                                   pad_token_id=tokenizer.pad_token_id)
    model.config.use_cache = True  # the Trainer turned it off for training; generation wants it
    save_model(trainer, folder.work_dir)
    prompt = options.sample_prompt or plan.data.prompt()
    result = TrainingResult(
        output_dir=folder.target, eval_loss=eval_loss, perplexity=math.exp(eval_loss),
        unigram_loss=baseline["loss"], unigram_perplexity=baseline["perplexity"], steps=trainer.state.global_step,
        tokens_seen=int(trainer.state.num_input_tokens_seen), train_seconds=train_output.metrics["train_runtime"],
        wall_seconds=time.perf_counter() - start, hardware=hardware(args.world_size),
        parameters=model.num_parameters(), sample=generate_text(model, tokenizer, prompt, seed=options.seed),
        options=dataclasses.asdict(options),
    )
    if args.should_save:
        record_finish(result, plan, blocks, prompt, model.config)
    return result


def record_finish(result: TrainingResult, plan: TrainingPlan, blocks: DatasetDict, prompt: str, config) -> None:
    """The finished run's training figure, card and run file (last: with results, the run is a finished one); then
    its checkpoints go. They hold what an unfinished run resumes from (weights, optimizer state: several times the
    model's size); a finished run's model is in the folder, and a new run trains it further (--init-from)."""
    options, folder = plan.options, plan.folder
    results = result.to_dict()
    del results["options"]  # stored next to the results in the run file
    validation_ids = np.array(blocks["validation"]["input_ids"])
    results.update(prompt=prompt, data=plan.data.name, **training_recipe(options.task),
                   train_tokens=int(len(blocks["train"]) * options.seq_len),
                   validation_tokens=int(validation_ids[:, 1:].size))
    run = {"options": result.options, "results": results}
    write_training_figure(folder.work_dir, baseline=result.unigram_loss, label=run_name(folder.target))
    write_model_card(folder.work_dir, config, run)
    write_run_file(folder.work_dir, run["options"], run["results"])
    remove_checkpoints(folder.work_dir)


def save_model(trainer: Trainer, folder: str) -> None:
    """Weights, config (with auto_map), code files, generation config and tokenizer, saved in a temporary folder and
    renamed into `folder`: a save that fails (a full disk) leaves no config.json without its weights. Every process
    calls it (gathering sharded weights is collective); the main one writes."""
    if not trainer.args.should_save:
        trainer.save_model(os.path.join(folder, "unused"))  # writes nothing off the main process
        return
    with saved_whole(folder, what=f"the model in {folder}") as temporary:
        trainer.save_model(temporary)
