"""Configuration of the hf_posattn model: a decoder-only transformer whose position scheme is one switch.

This file travels with every saved model as remote code, so it imports only `transformers` (and the standard
library), never the rest of the `hf_posattn` package.
"""

import os

from transformers.activations import ACT2FN
from transformers.configuration_utils import PreTrainedConfig


# The names `position_embedding_type` accepts. Each one is a small class in `positional.py`.
POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned", "rotary", "alibi", "none")

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
        position_embedding_type (`str`): How the model knows where a token is:
            - `"sinusoidal"`: the fixed sin/cos table of Vaswani et al., added to the token embeddings (times
              `initializer_range`);
            - `"learned"`: a trained vector per position, added to the token embeddings (BERT, GPT-2);
            - `"rotary"`: queries and keys rotated by an angle proportional to the position (RoFormer, Llama);
            - `"alibi"`: a per-head penalty, linear in the query-key distance, added to the attention scores
              (Press et al.);
            - `"none"`: no position information at all (the causal mask alone tells order).
        rope_theta (`float`): Base of the rotary frequencies (only used by `"rotary"`).
        type_vocab_size (`int`): Number of segments (`token_type_ids` values), as in BERT's sentence A / B.
            0 turns segment embeddings off.
        embedding_layer_norm (`bool`): Apply a LayerNorm to the sum of the embeddings, as BERT does.
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
        "layers.*.self_attn.qkv_proj": "colwise",  # its output is grouped by head: each device gets whole heads
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }

    vocab_size: int = 8192
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    max_position_embeddings: int = 1024
    position_embedding_type: str = "sinusoidal"
    rope_theta: float = 10000.0
    type_vocab_size: int = 2
    embedding_layer_norm: bool = True
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        super().__post_init__(**kwargs)
        self.validate()

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

    def validate(self):
        """Raise a `ValueError` naming the field, the value and what is allowed, for the first invalid value.

        Runs at construction, when a model is built from the config, and before `save_pretrained` writes it.
        """

        def fail(field, allowed):
            raise ValueError(f"PosAttnConfig.{field}={getattr(self, field)!r} is invalid: {allowed}.")

        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            fail("position_embedding_type", f"expected one of {', '.join(map(repr, POSITION_EMBEDDING_TYPES))}")
        for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "max_position_embeddings"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                fail(field, "expected a positive integer")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size", f"must be divisible by num_attention_heads={self.num_attention_heads}")
        if self.position_embedding_type == "rotary" and self.head_dim % 2:
            fail("hidden_size", f"rotary positions rotate pairs of features, so the head size "
                                f"hidden_size / num_attention_heads = {self.head_dim} must be even")
        if self.position_embedding_type == "sinusoidal" and self.hidden_size % 2:
            fail("hidden_size", "sinusoidal positions pair a sin and a cos feature, so it must be even")
        if isinstance(self.type_vocab_size, bool) or not isinstance(self.type_vocab_size, int) \
                or self.type_vocab_size < 0:
            fail("type_vocab_size", "expected an integer >= 0 (0 turns segment embeddings off)")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                fail(field, "expected a probability in [0, 1)")
        for field in ("rope_theta", "layer_norm_eps", "initializer_range"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not value > 0:
                fail(field, "expected a positive number")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            fail("hidden_act", "expected the name of an activation in transformers.activations.ACT2FN, "
                               "e.g. 'gelu', 'gelu_new', 'relu', 'silu'")


__all__ = ["PosAttnConfig", "POSITION_EMBEDDING_TYPES", "ARCHITECTURE_FIELDS"]
