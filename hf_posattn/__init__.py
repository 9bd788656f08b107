"""hf_posattn: a Hugging Face causal language model whose position scheme is one config switch.

`import hf_posattn` registers the model with transformers' Auto classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoModelForSequenceClassification` and the pipelines know `model_type="posattn"`,
and so that `save_pretrained` writes the code next to the weights (loadable with `trust_remote_code=True`
where this package is not installed).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from .configuration_posattn import POSITION_EMBEDDING_TYPES, PosAttnConfig
from .modeling_posattn import (
    PosAttnForCausalLM,
    PosAttnForSequenceClassification,
    PosAttnModel,
    PosAttnPreTrainedModel,
)
from .positional import POSITION_SCHEMES, Panel, PositionScheme, register_scheme


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
]
