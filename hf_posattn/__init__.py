"""hf_posattn: a Hugging Face causal language model whose position scheme is one config switch.

`import hf_posattn` registers the model with transformers' Auto classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoModelForSequenceClassification` and the pipelines know `model_type="posattn"`,
and so that `save_pretrained` writes the code next to the weights (loadable with `trust_remote_code=True`
where this package is not installed).

The model lives in `hf_posattn/model/` (what a saved folder carries); the tools around it (data, training, the
study, sharing, figures, the lesson) are imported when first used, so that importing the package costs little more
than torch and transformers: `hf_posattn.train` imports the training tools, `hf_posattn.compare` the study.
"""

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from .model.configuration_posattn import PosAttnConfig
from .model.modeling_posattn import (
    PosAttnForCausalLM,
    PosAttnForSequenceClassification,
    PosAttnModel,
    PosAttnPreTrainedModel,
)
from .model.positional import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES, Panel, PositionScheme, register_scheme

__version__ = "0.1.0"

_AUTO_CLASSES = {
    AutoModel: PosAttnModel,
    AutoModelForCausalLM: PosAttnForCausalLM,
    AutoModelForSequenceClassification: PosAttnForSequenceClassification,
}

# In this process: the Auto classes and pipelines resolve model_type "posattn" to these classes.
AutoConfig.register(PosAttnConfig.model_type, PosAttnConfig, exist_ok=True)
for _auto_class, _model_class in _AUTO_CLASSES.items():
    _auto_class.register(PosAttnConfig, _model_class, exist_ok=True)

# For saved folders and the Hub: save_pretrained copies the code and writes `auto_map` into config.json.
PosAttnConfig.register_for_auto_class()
for _auto_class, _model_class in _AUTO_CLASSES.items():
    _model_class.register_for_auto_class(_auto_class.__name__)

# The tools' public names, and the module each is imported from when first asked for.
_TOOLS = {
    "TrainingOptions": "training.options",
    "TrainingResult": "training.outcomes",
    "TrainingInterrupted": "training.outcomes",
    "TrainingDiverged": "training.outcomes",
    "train": "training.run",
    "CompareOptions": "study.options",
    "compare": "study.run",
    "load_model": "sharing.loading",
    "generate_text": "sharing.generation",
    "push": "sharing.hub",
    "from_gpt2": "sharing.convert",
    "evaluate_lengths": "study.perplexity",
    "perplexity": "study.perplexity",
    "load_texts": "data.corpus",
    "train_tokenizer": "data.tokenizers",
}


def __getattr__(name: str):
    if name in _TOOLS:
        value = getattr(importlib.import_module(f".{_TOOLS[name]}", __name__), name)
        globals()[name] = value  # asked once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_TOOLS])


__all__ = [
    "POSITION_EMBEDDING_TYPES",
    "POSITION_SCHEMES",
    "Panel",
    "PositionScheme",
    "PosAttnConfig",
    "PosAttnForCausalLM",
    "PosAttnForSequenceClassification",
    "PosAttnModel",
    "PosAttnPreTrainedModel",
    "register_scheme",
    *_TOOLS,
]
