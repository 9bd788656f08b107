"""The model card of a trained model: the `README.md` of its folder, a Hub model card built with huggingface_hub's
`ModelCard`/`ModelCardData` from the template in `model_cards/`."""

import json
import os
import shlex
from importlib.resources import files

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..figures.training import training_figure
from ..files import write_with
from ..model.positional import POSITION_SCHEMES

TEMPLATE = files("hf_posattn") / "model_cards" / "posattn.md"

CONFIG_FIELDS = ("position_embedding_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
                 "hidden_dropout_prob", "attention_probs_dropout_prob")


def training_command(options: dict) -> str:
    """The `posattn train` command line that gives these options."""
    words = ["posattn", "train"]
    for name, value in options.items():
        # What does not change the model: where it goes, how often it is checked, where the logs go, how it runs.
        if value is None or value is False or name in ("output_dir", "eval_steps", "save_steps", "report_to",
                                                       "resume", "overwrite", "quiet"):
            continue
        flag = "--grad-accum" if name == "gradient_accumulation_steps" else "--" + name.replace("_", "-")
        if value is True:  # a switch that changes the model, e.g. --scale-embeddings
            words.append(flag)
            continue
        if isinstance(value, dict):  # rope_parameters, as --rope-parameters reads them
            words += [flag, json.dumps(value)]
        else:
            words += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return shlex.join(words)


def build_model_card(config, run: dict, model_id: str, training_figure: str | None = None) -> ModelCard:
    """The card of a model trained by `hf_posattn.training.train` (`run`: the options and results it recorded in
    `posattn_run.json`), with `model_id` (a folder or a Hub repo id) in the usage snippet and, when given,
    `training_figure` (its path relative to the model folder, which the Hub renders from the repository) shown
    under Training."""
    options, results = run["options"], run["results"]
    scheme = POSITION_SCHEMES[config.position_embedding_type]
    name = os.path.basename(os.path.normpath(model_id))
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["hf_posattn", "posattn", f"{config.position_embedding_type}-positions", "causal-lm", "custom_code"],
        model_name=name,
        eval_results=[EvalResult(task_type="text-generation", task_name="Causal language modeling",
                                 dataset_type="text", dataset_name=results["data"], dataset_split="validation",
                                 metric_type="perplexity", metric_name="Perplexity",
                                 metric_value=round(results["perplexity"], 3))],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=name,
        model_id=model_id,
        position=config.position_embedding_type,
        # What the card says of the scheme is what the scheme says of itself: a scheme registered at run time has a card.
        position_description=scheme.description,
        position_citation=scheme.citation,
        length_limit=scheme.max_length(config),
        config_rows=[(field, getattr(config, field)) for field in CONFIG_FIELDS],
        vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings,
        seq_len=options["seq_len"],
        seed=options["seed"],
        learning_rate=options["learning_rate"],
        batch_tokens=f"{options['batch_size'] * options['gradient_accumulation_steps']} x {options['seq_len']}",
        train_minutes=f"{results['train_seconds'] / 60:.1f}",
        wall_minutes=f"{results['wall_seconds'] / 60:.1f}",
        command=training_command(options),
        training_figure=training_figure,
        **{key: results[key] for key in ("data", "parameters", "train_tokens", "validation_tokens", "steps",
                                         "tokens_seen", "hardware", "eval_loss", "perplexity", "unigram_loss",
                                         "unigram_perplexity", "sample", "prompt")},
    )


def write_model_card(folder: str, config, run: dict) -> ModelCard:
    """Write the card as README.md in `folder` (whole: `files.write_with`), showing the folder's training figure when
    it holds one."""
    card = build_model_card(config, run, model_id=folder, training_figure=training_figure(folder))
    write_with(os.path.join(folder, "README.md"), card.save)
    return card

