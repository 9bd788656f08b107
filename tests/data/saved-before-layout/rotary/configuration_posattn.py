"""Configuration of the hf_posattn model: a decoder-only transformer whose position scheme is one switch.

This file travels with every saved model as remote code, so it imports only `transformers` (and the standard
library) and its flat sibling `positional.py`, never the rest of the `hf_posattn` package.
"""

import math
import os

from huggingface_hub.dataclasses import as_validated_field, strict
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig

from .positional import POSITION_EMBEDDING_TYPES, POSITION_SCHEMES

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
ARCHITECTURE_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "position_embedding_type", "rope_theta", "type_vocab_size", "embedding_layer_norm",
    "layer_norm_eps", "tie_word_embeddings", "initializer_range",
)


def checked(allowed: str, accepts):
    """A config field whose values must pass `accepts`; `allowed` says which do, in the error message. Used as
    `field: int = checked("...", test)(default=...)`, the way transformers' `interval(...)` fields are."""

    def validator(value):
        if not accepts(value):
            raise ValueError(allowed)

    validator.allowed = allowed
    return as_validated_field(validator)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


positive_int = checked("expected a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
positive_number = checked("expected a positive, finite number", lambda v: is_number(v) and v > 0)
probability = checked("expected a probability in [0, 1)", lambda v: is_number(v) and 0 <= v < 1)
boolean = checked("expected True or False", lambda v: isinstance(v, bool))


def one_of_the_schemes(value):
    if value not in POSITION_SCHEMES:  # read live: schemes registered at run time count
        raise ValueError(f"expected one of {', '.join(map(repr, POSITION_EMBEDDING_TYPES))}")


def with_value_errors(cls):
    """Make `@strict`'s errors `ValueError`s that name the field, the value and what is allowed, as every error of
    this package about bad input is (`@strict` raises its own exception classes, which callers do not catch)."""
    strict_setattr, strict_validate = cls.__setattr__, cls.validate

    def __setattr__(self, name, value):
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            # A type error comes first, from the annotation; the field's own check says what is allowed.
            cause = error.__cause__
            checks = [check.allowed for check in self.__validators__.get(name, []) if hasattr(check, "allowed")]
            allowed = str(cause) if isinstance(cause, ValueError) or not checks else checks[0]
            raise ValueError(f"{cls.__name__}.{name}={value!r} is invalid: {allowed}.") from None

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            raise ValueError(str(error.__cause__)) from None

    cls.__setattr__, cls.validate = __setattr__, validate
    return cls


@with_value_errors
@strict
class PosAttnConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PosAttnModel`]: a causal (decoder-only) transformer language model whose input is built
    BERT-style (token + segment + position embeddings, summed and normalised) and whose position scheme is chosen
    with one field, `position_embedding_type`.

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
        rope_theta (`float`): Base of the rotary frequencies ("rotary", "xpos"); the same as
            `rope_parameters["rope_theta"]`.
        rope_parameters (`dict`, *optional*): Rotary variant, as in transformers' own models: `rope_type` ("default",
            "linear", "dynamic", "yarn", "longrope", "llama3") and its parameters (e.g. `factor`).
        relative_attention_num_buckets (`int`), relative_attention_max_distance (`int`): The distance buckets of
            "t5": half of them exact, the rest log-spaced up to the maximum distance.
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

    Every value is checked at construction: a wrong one raises a `ValueError` that names the field, the value and
    what is allowed.

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

    vocab_size: int = positive_int(default=8192)
    hidden_size: int = positive_int(default=256)
    num_hidden_layers: int = positive_int(default=4)
    num_attention_heads: int = positive_int(default=4)
    intermediate_size: int = positive_int(default=1024)
    hidden_act: str = checked("expected the name of an activation in transformers.activations.ACT2FN, e.g. 'gelu', "
                              "'gelu_new', 'relu', 'silu'", lambda v: isinstance(v, str) and v in ACT2FN)(default="gelu")
    max_position_embeddings: int = positive_int(default=1024)
    position_embedding_type: str = as_validated_field(one_of_the_schemes)(default="sinusoidal")
    rope_theta: int | float = positive_number(default=10000.0)
    rope_parameters: dict | None = None
    relative_attention_num_buckets: int = positive_int(default=32)
    relative_attention_max_distance: int = positive_int(default=128)
    type_vocab_size: int = checked("expected an integer >= 0 (0 turns segment embeddings off)",
                                   lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0)(default=2)
    embedding_layer_norm: bool = boolean(default=True)
    scale_embeddings: bool = boolean(default=False)
    layer_norm_eps: int | float = positive_number(default=1e-5)
    hidden_dropout_prob: int | float = probability(default=0.1)
    attention_probs_dropout_prob: int | float = probability(default=0.1)
    initializer_range: int | float = positive_number(default=0.02)
    tie_word_embeddings: bool = boolean(default=True)
    use_cache: bool = boolean(default=True)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        super().__post_init__(**kwargs)
        # transformers keeps the rotary base in `rope_parameters` (filled from `rope_theta` when absent); the field
        # `rope_theta` stays, as saved models have it, and always says the same.
        self.rope_theta = self.rope_parameters["rope_theta"]

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """The config of a saved model (what `from_pretrained` and the Auto classes build from `config.json`). A file
        that lacks an architecture field (`ARCHITECTURE_FIELDS`) or holds an invalid value is refused with a
        `ValueError` that names the file (its folder too when the Auto classes pass it as `name_or_path`) and the
        field."""
        source = os.path.join(kwargs.get("name_or_path") or "", "config.json")
        missing = [name for name in ARCHITECTURE_FIELDS if name not in config_dict]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(missing)}: a model built with the default in its place would not be "
                f"the model whose weights are there. save_pretrained writes every field, so the file was edited or "
                f"written by other code: add what is missing, with the values the model was trained with."
            )
        try:
            return super().from_dict(config_dict, **kwargs)
        except ValueError as error:
            raise ValueError(f"{source}: {error} Correct it in the file.") from error

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self):
        """The checks across fields (each field's own values are checked when it is set). Part of `@strict`'s
        `validate()`, which runs at construction, when a model is built from the config, and before `save_pretrained`
        writes it."""
        if self.hidden_size % self.num_attention_heads:
            self.refuse("hidden_size", f"must be divisible by num_attention_heads={self.num_attention_heads}")
        problem = POSITION_SCHEMES[self.position_embedding_type].config_problem(self)
        if problem is not None:
            self.refuse(*problem)

    def validate_rope(self):
        """transformers' checks of `rope_parameters`, for the schemes that read it only."""
        if POSITION_SCHEMES[self.position_embedding_type].uses_rope_parameters:
            try:
                super().validate_rope()
            except (ValueError, KeyError) as error:  # KeyError: a parameter its rope_type needs is missing
                self.refuse("rope_parameters", str(error).strip('"'))

    def refuse(self, field, allowed):
        raise ValueError(f"{type(self).__name__}.{field}={getattr(self, field)!r} is invalid: {allowed}.")


__all__ = ["PosAttnConfig", "POSITION_EMBEDDING_TYPES", "ARCHITECTURE_FIELDS"]
