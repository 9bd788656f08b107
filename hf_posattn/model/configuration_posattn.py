"""Configuration of the hf_posattn model: a decoder-only transformer whose position scheme is one switch.

This file travels with every saved model as remote code, so it imports only `transformers` (and the standard
library) and its flat sibling `positional.py`, never the rest of the `hf_posattn` package.
"""

import copy
import os

from huggingface_hub.dataclasses import as_validated_field, strict
from huggingface_hub.errors import StrictDataclassError, StrictDataclassFieldValidationError
from transformers.configuration_utils import PreTrainedConfig
from transformers.utils.type_validators import activation_fn_key, interval, positive_int_field

from .positional import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES, scheme_field_names, schemes_reading


# Where a saved folder (or Hub repo) finds the classes when `hf_posattn` is not installed. Written into
# `config.json` so that every Auto class, not only the one that was saved, loads with `trust_remote_code=True`.
AUTO_MAP = {
    "AutoConfig": "configuration_posattn.PosAttnConfig",
    "AutoModel": "modeling_posattn.PosAttnModel",
    "AutoModelForCausalLM": "modeling_posattn.PosAttnForCausalLM",
    "AutoModelForSequenceClassification": "modeling_posattn.PosAttnForSequenceClassification",
}

# The fields that decide the shapes of the weights and what the model computes. `save_pretrained` writes every field,
# so a config.json without one of these was edited or written by other code, and loading it with the default in its
# place would silently give another model (e.g. sinusoidal positions for a rotary model's weights): it is refused.
# A field added later must come with a default that gives the models saved before it, and stay out of this list.
# The fields of a scheme's own (`PositionScheme.config_fields`) are required too, for the schemes that read them.
ARCHITECTURE_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "position_embedding_type", "type_vocab_size", "embedding_layer_norm",
    "layer_norm_eps", "tie_word_embeddings", "initializer_range",
)

# What hf_posattn 0.1.0 wrote into the config.json of every model, whatever its scheme: a saved model whose scheme
# does not read one of these loads with it dropped. Any other value there is refused, as it is when given directly.
EARLIER_DEFAULTS = {
    "rope_theta": 10000.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
}
# transformers' names for the rotary base and variant, which it moves into `rope_parameters`.
ROPE_ALIASES = ("rope_theta", "rope_scaling")
# The scheme of a config that names none, and of every tool's run that names none: Vaswani et al.'s.
DEFAULT_POSITION = "sinusoidal"


@as_validated_field
def one_of_the_schemes(value: str):
    if value not in POSITION_SCHEMES:  # read live: schemes registered at run time count
        raise ValueError(f"Value must be one of {', '.join(map(repr, POSITION_EMBEDDING_TYPES))}, got {value!r}.")


@strict
class PosAttnConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PosAttnModel`]: a causal (decoder-only) transformer language model whose input is built
    BERT-style (token + segment + position embeddings, summed and normalised) and whose position scheme is chosen
    with one field, `position_embedding_type`.

    The defaults describe a small model built by hand (`PosAttnConfig()`: 4 layers of 256, an 8,192-token vocabulary,
    dropout 0.1, as small BERT- and GPT-2-style configs have); `posattn train` never relies on them: each training
    preset sets every size and rate itself (the `tiny` preset: 4,096 tokens and no dropout, for a model that sees its
    text once or twice), and a saved model's config.json records what it was built with.

    Args:
        vocab_size (`int`): Number of token ids the model knows.
        hidden_size (`int`): Width of the embeddings and of the residual stream.
        num_hidden_layers (`int`): Number of decoder layers.
        num_attention_heads (`int`): Attention heads per layer; `hidden_size` must be divisible by it.
        intermediate_size (`int`): Width of the MLP's hidden layer.
        hidden_act (`str`): Activation of the MLP, any key of `transformers.activations.ACT2FN`.
        max_position_embeddings (`int`): Positions the model is built for. A hard limit only for `"learned"`
            positions (one trained vector per position); the other schemes run past it.
        position_embedding_type (`str`): How the model knows where a token is: the name of a scheme in
            `positional.POSITION_SCHEMES`, each of which describes itself (`description`, `citation`). Built in:
            "sinusoidal", "learned", "rotary", "alibi", "none", "t5", "kerple", "fire", "xpos"; `register_scheme`
            adds more at run time.
        rope_parameters (`dict`, *optional*): "rotary" and "xpos" only. The rotary variant, as in transformers'
            own models: `rope_type` ("default", "linear", "dynamic", "yarn", "longrope", "llama3"), its parameters
            (e.g. `factor`) and `rope_theta`, the base of the frequencies (10000 unless given; `rope_theta=` is
            accepted too, as transformers accepts it).
        relative_attention_num_buckets (`int`), relative_attention_max_distance (`int`): "t5" only. The distance
            buckets: half of them exact, the rest log-spaced up to the maximum distance (defaults 32 and 128).
        type_vocab_size (`int`): Number of segments (`token_type_ids` values), as in BERT's sentence A / B.
            0 turns segment embeddings off.
        embedding_layer_norm (`bool`): Apply a LayerNorm to the sum of the embeddings, as BERT does.
        scale_embeddings (`bool`): Multiply token embeddings by sqrt(hidden_size) and give "sinusoidal" waves
            amplitude 1, as Vaswani et al. and fairseq do; by default the waves are scaled down to
            `initializer_range` instead.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        hidden_dropout_prob (`float`): Dropout on the embeddings and on each residual branch.
        attention_probs_dropout_prob (`float`): Dropout on the attention weights.
        initializer_range (`float`): Standard deviation of the normal weight initialisation; also the fixed
            amplitude of `"sinusoidal"` positions, which are scaled to the size token embeddings start at.
        tie_word_embeddings (`bool`): Share the LM head's weight with the token embedding.
        use_cache (`bool`): Return the key/value cache, for fast generation.
        pad_token_id, bos_token_id, eos_token_id (`int`, *optional*): Special token ids.

    The fields marked with a scheme exist only in configs of that scheme: a config holds what its model reads, and
    a field given for a scheme that does not read it is refused. Every value is checked at construction, with
    `@strict` as transformers' own configs are: a wrong one raises a `StrictDataclassFieldValidationError` (or, for
    a check across fields, a `StrictDataclassClassValidationError`) that names the field, the value and what is
    allowed; `from_pretrained` raises a `ValueError` that also names the config.json.

    Example:

    ```python
    >>> from hf_posattn import PosAttnConfig, PosAttnForCausalLM
    >>> config = PosAttnConfig(position_embedding_type="alibi", num_hidden_layers=2)
    >>> model = PosAttnForCausalLM(config)
    ```
    """

    model_type = "posattn"
    keys_to_ignore_at_inference = ["cache"]
    # Tensor-parallel plan, in the format of transformers' own models.
    base_model_tp_plan = {
        # Sharded on the vocabulary like the LM head tied to it (transformers adds this itself only for a module
        # named `embed_tokens`).
        "embeddings.word_embeddings": "embedding_rowwise",
        "layers.*.self_attn.qkv_proj": "colwise",  # its output is grouped by head: each device gets whole heads
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }

    vocab_size: int = positive_int_field(default=8192)
    hidden_size: int = positive_int_field(default=256)
    num_hidden_layers: int = positive_int_field(default=4)
    num_attention_heads: int = positive_int_field(default=4)
    intermediate_size: int = positive_int_field(default=1024)
    hidden_act: str = activation_fn_key(default="gelu")
    max_position_embeddings: int = positive_int_field(default=1024)
    position_embedding_type: str = one_of_the_schemes(default=DEFAULT_POSITION)
    type_vocab_size: int = interval(min=0)(default=2)
    embedding_layer_norm: bool = True
    scale_embeddings: bool = False
    layer_norm_eps: float = interval(min=0.0, max=1.0, exclude_min=True)(default=1e-5)
    hidden_dropout_prob: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    attention_probs_dropout_prob: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    initializer_range: float = interval(min=0.0, max=1.0, exclude_min=True)(default=0.02)
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        scheme = POSITION_SCHEMES[self.position_embedding_type]
        for name in scheme_field_names():  # the fields of the other schemes: refused, unless left out
            if name not in scheme.config_fields and kwargs.get(name) is not None:
                self.refuse_scheme_field(name, kwargs[name])
            if name not in scheme.config_fields:
                kwargs.pop(name, None)
        if "rope_parameters" not in scheme.config_fields:
            for name in ROPE_ALIASES:
                if kwargs.get(name) is not None:
                    self.refuse_scheme_field(name, kwargs[name])
                kwargs.pop(name, None)
        # The scheme's own fields, before transformers' `__post_init__`: it standardises `rope_parameters` (with
        # `rope_theta` and `rope_scaling`) when the config has that attribute.
        for name, default in scheme.config_fields.items():
            setattr(self, name, kwargs.pop(name, copy.deepcopy(default)))
        super().__post_init__(**kwargs)

    def __setattr__(self, name, value):
        """A field of a scheme other than this config's is refused; a change of `position_embedding_type` after
        construction brings the new scheme's fields, at their defaults, in place of the old one's."""
        changes_scheme = name == "position_embedding_type" and "position_embedding_type" in self.__dict__
        own = POSITION_SCHEMES[self.position_embedding_type].config_fields if "position_embedding_type" in \
            self.__dict__ else None
        if own is not None and ((name in scheme_field_names() and name not in own)
                                or (name in ROPE_ALIASES and "rope_parameters" not in own)):
            self.refuse_scheme_field(name, value)
        old = POSITION_SCHEMES[self.position_embedding_type] if changes_scheme else None
        super().__setattr__(name, value)
        if old is not None and old is not POSITION_SCHEMES[value]:
            for field in old.config_fields:
                del self.__dict__[field]
            for field, default in POSITION_SCHEMES[value].config_fields.items():
                setattr(self, field, copy.deepcopy(default))
            if "rope_parameters" in POSITION_SCHEMES[value].config_fields:
                self.convert_rope_params_to_dict()  # transformers' defaults: rope_type "default", rope_theta 10000

    def refuse_scheme_field(self, name, value):
        """Refused as `@strict` refuses a field's value, with what to do instead."""
        readers = schemes_reading("rope_parameters" if name in ROPE_ALIASES else name)
        raise StrictDataclassFieldValidationError(field=name, cause=ValueError(
            f"position_embedding_type={self.position_embedding_type!r} does not read it (it is read by "
            f"{' and '.join(map(repr, readers))}), got {value!r}. Leave it out, or choose such a scheme."))

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """The config of a saved model (what `from_pretrained` and the Auto classes build from `config.json`). A file
        that lacks an architecture field (`ARCHITECTURE_FIELDS`) or holds an invalid value is refused with a
        `ValueError` that names the file (its folder too when the Auto classes pass it as `name_or_path`) and the
        field."""
        source = os.path.join(kwargs.get("name_or_path") or "", "config.json")
        scheme = POSITION_SCHEMES.get(config_dict.get("position_embedding_type"))
        if scheme is not None:
            config_dict = {name: value for name, value in config_dict.items()
                           if name in scheme.config_fields or EARLIER_DEFAULTS.get(name, object()) != value}
        required = (*ARCHITECTURE_FIELDS, *(scheme.config_fields if scheme is not None else ()))
        missing = [name for name in required if name not in config_dict]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(missing)}: a model built with the default in its place would not be "
                f"the model whose weights are there. save_pretrained writes every field, so the file was edited or "
                f"written by other code: add what is missing, with the values the model was trained with."
            )
        try:
            return super().from_dict(config_dict, **kwargs)
        except (ValueError, StrictDataclassError) as error:
            raise ValueError(f"{source}: {error} Correct it in the file.") from error

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self):
        """The checks across fields (each field's own values are checked when it is set), and the scheme's checks of
        the fields it reads. Part of `@strict`'s `validate()`, which runs at construction, when a model is built from
        the config, and before `save_pretrained` writes it."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_attention_heads="
                             f"{self.num_attention_heads}.")
        problem = POSITION_SCHEMES[self.position_embedding_type].config_problem(self)
        if problem is not None:
            field, allowed = problem
            raise ValueError(f"{field}={getattr(self, field)!r} is invalid for position_embedding_type="
                             f"{self.position_embedding_type!r}: {allowed}.")

    def validate_rope(self):
        """transformers' checks of `rope_parameters` (only the schemes that read them have them). transformers raises
        a KeyError for a parameter that a rope_type needs and lacks; `@strict` reports ValueErrors."""
        try:
            super().validate_rope()
        except KeyError as error:
            raise ValueError(str(error).strip('"')) from None


__all__ = ["PosAttnConfig", "POSITION_EMBEDDING_TYPES", "ARCHITECTURE_FIELDS"]
