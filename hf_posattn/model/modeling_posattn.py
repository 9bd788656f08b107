"""The hf_posattn model: a decoder-only transformer with BERT-style inputs and a switchable position scheme.

Read top to bottom:

1. `PosAttnEmbeddings`: token + segment (+ absolute position) embeddings, summed, LayerNorm, dropout (as BERT).
2. `eager_attention_forward` and `PosAttnAttention`: attention as a soft dictionary lookup. Each token asks a
   *query*; every earlier token offers a *key* and a *value*; softmax(q·k / sqrt(d)) says how much of each value
   the asking token takes. The kernel that computes it is chosen through transformers' attention interface
   (eager, sdpa, flex_attention, flash_attention_2).
3. `PosAttnMLP`, `PosAttnDecoderLayer`: pre-LN blocks, attention then MLP, each added to the residual stream.
4. `PosAttnModel`: the inputs are checked (`checked_sizes`, in `input_checks.py`), then positions, the causal
   mask and the KV cache are prepared once per forward, here.
5. `PosAttnForCausalLM`: predicts the next token (GPT-style). `PosAttnForSequenceClassification`: one label per
   text or text pair, read at the last token.

The position scheme (`positional.py`) is asked the same three questions whatever it is; nothing here branches on
which scheme the config chose.

This file travels with saved models as remote code: it imports only torch, transformers and its flat siblings.
"""

import math
import os
from collections.abc import Callable

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin, MaxLengthCriteria
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_posattn import PosAttnConfig
from .input_checks import (
    Sizes,
    check_labels,
    check_numeric_range,
    checked_sizes,
    compute_dtype,
    outside,
    refuse_bad_values,
    weights_problem,
)
from .positional import (POSITION_SCHEMES, SCORE_BIAS, DistanceBias, PositionScheme, Rotation, apply_rotation,
                         length_limit, position_range)


logger = logging.get_logger(__name__)


class PosAttnEmbeddings(nn.Module):
    """The input of the model, built as BERT builds it: the sum of what a token is (token embedding), which
    segment it belongs to (sentence A or B: segment embedding), and, for absolute schemes, where it is (position
    embedding); then LayerNorm and dropout."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size > 0 else None
        )
        self.norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.embedding_layer_norm else nn.Identity()
        )
        self.dropout = config.hidden_dropout_prob
        # Vaswani et al. scale token embeddings up by sqrt(d) to balance amplitude-1 sinusoidal waves; by default the
        # waves are scaled down instead (see `SinusoidalPositions`), and token embeddings are used as they are.
        self.scale = math.sqrt(config.hidden_size) if config.scale_embeddings else 1.0

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if self.scale != 1.0:
            embeddings = embeddings * self.scale
        if self.token_type_embeddings is not None:
            if token_type_ids is None:  # everything is segment 0, as in BERT
                embeddings = embeddings + self.token_type_embeddings.weight[0]
            else:
                embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if position_embeds is not None:
            # A scheme's table keeps the dtype it was computed in (float32) where the model was built in another
            # (`from_pretrained(dtype=...)`): what it adds takes the dtype of what it is added to.
            embeddings = embeddings + position_embeds.to(embeddings.dtype)
        return nn.functional.dropout(self.norm(embeddings), self.dropout, self.training)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs: Unpack[TransformersKwargs],
):
    """Attention spelled out: scores = q·kᵀ / sqrt(d) (+ position bias) (+ mask), softmax, weighted sum of values.

    Like a dictionary lookup in which a query matches every key a little: softmax turns the scores into weights
    that sum to 1, and the result is the weights' blend of the values. The scores are kept in float32, so adding
    the mask's minimum (and ALiBi's bias) cannot overflow half precision into -inf and NaN.
    """
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling
    if position_bias is not None:
        scores = scores + position_bias
    if attention_mask is not None:
        scores = scores + attention_mask
    attn_weights = nn.functional.softmax(scores, dim=-1).to(value.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class PosAttnAttention(nn.Module):
    """Multi-head causal self-attention.

    Every token's hidden state is projected three ways: a query (what am I looking for?), a key (what do I offer
    to be found by?) and a value (what do I hand over if found?). Each head compares queries with the keys of the
    tokens before them, and mixes their values by the softmax of the scores. The position scheme can rotate q and
    k (rotary) or bias the scores (ALiBi); the KV cache keeps past keys and values for generation.
    """

    def __init__(self, config: PosAttnConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = True
        # The three projections are one matrix product (as GPT-2's c_attn): one call instead of three, which is what
        # decoding a few tokens at a time pays for. Its output holds, for each head in turn, that head's query, key
        # and value, so that splitting the output features across devices (tensor parallelism) gives whole heads.
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        rotation: Rotation | None = None,
        position_bias: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        # [batch, seq, hidden] -> [batch, seq, heads, 3, head_dim] -> query, key, value: [batch, heads, seq, head_dim]
        qkv = self.qkv_proj(hidden_states).view(*input_shape, -1, 3, self.head_dim).transpose(1, 2)
        query, key, value = qkv.unbind(dim=3)

        if rotation is not None:
            query, key = apply_rotation(query, key, rotation)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            position_bias=position_bias,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


# Activation names of ACT2FN whose function torch computes in one fused kernel under another name. GPT-2's
# "gelu_new" is the tanh approximation of GELU spelled out in Python (eight elementwise operations forward, each
# keeping its input for the backward); "gelu_pytorch_tanh" is the same function in one kernel.
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


class PosAttnMLP(nn.Module):
    """The position-wise feed-forward network: widen, activate, project back."""

    def __init__(self, config: PosAttnConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act_fn = ACT2FN[FUSED_ACTIVATIONS.get(config.hidden_act, config.hidden_act)]
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(hidden_states)))


class PosAttnDecoderLayer(GradientCheckpointingLayer):
    """A pre-LN block (GPT-2, nanoGPT): x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: PosAttnConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = PosAttnAttention(config, layer_idx)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PosAttnMLP(config)
        # Dropout as a function, not `nn.Dropout` modules: in eval mode (every decoding step) a module call does
        # nothing but cost a Python call.
        self.dropout = config.hidden_dropout_prob

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_bias: torch.Tensor | DistanceBias | None = None,
        attention_mask: torch.Tensor | None = None,
        rotation: Rotation | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.self_attn(
            self.attn_norm(hidden_states),
            attention_mask=attention_mask,
            rotation=rotation,
            position_bias=position_bias,
            cache=cache,
            **kwargs,
        )
        hidden_states = hidden_states + nn.functional.dropout(attn_output, self.dropout, self.training)
        mlp_output = self.mlp(self.mlp_norm(hidden_states))
        return hidden_states + nn.functional.dropout(mlp_output, self.dropout, self.training)


class PosAttnPreTrainedModel(PreTrainedModel):
    config_class = PosAttnConfig
    config: PosAttnConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PosAttnDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": PosAttnDecoderLayer, "attentions": PosAttnAttention}

    def __init__(self, config: PosAttnConfig, *args, **kwargs):
        config.validate()  # the config may have been edited since it was built
        super().__init__(config, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with weights read from safetensors only unless the caller passes
        `use_safetensors=False` (a `.bin` file is a pickle, which can run code when loaded), and an error that names
        the weights file when one cannot be read: safetensors' own message does not say which file it was."""
        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            folder = os.path.normpath(os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or ""))
            problem = weights_problem(folder, kwargs["use_safetensors"])
            if problem is None:
                raise
            raise OSError(problem) from error

    def _init_weights(self, module):
        super()._init_weights(module)  # normal(0, initializer_range) for Linear/Embedding, (1, 0) for LayerNorm
        if isinstance(module, PositionScheme):
            module.initialize(self.config.initializer_range)
        elif isinstance(module, (PosAttnAttention, PosAttnMLP)):
            # The projections that write into the residual stream are scaled down by sqrt(2 * layers), as in GPT-2:
            # each layer adds two such terms, and the stream's variance should not grow with depth.
            residual = module.o_proj if isinstance(module, PosAttnAttention) else module.down_proj
            std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(residual.weight, mean=0.0, std=std)

    def _flash_attn_can_dispatch(self, flash_attn_version: int, is_init_check: bool = False) -> bool:
        if SCORE_BIAS in POSITION_SCHEMES[self.config.position_embedding_type].contributes():
            raise ValueError(
                f"position_embedding_type={self.config.position_embedding_type!r} adds a bias to the attention "
                f"scores, which the flash-attention kernels behind attn_implementation='flash_attention_"
                f"{flash_attn_version}' cannot take. Use attn_implementation='sdpa', 'flex_attention' or 'eager'."
            )
        return super()._flash_attn_can_dispatch(flash_attn_version, is_init_check)


class PosAttnModel(PosAttnPreTrainedModel):
    """The bare decoder: embeddings, N decoder layers, a final LayerNorm. Returns hidden states (and the cache)."""

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.embeddings = PosAttnEmbeddings(config)
        self.positions = POSITION_SCHEMES[config.position_embedding_type](config)
        # Read once: whether forward builds a score bias (and the query x key distances it needs).
        self.biases_scores = SCORE_BIAS in self.positions.contributes()
        self.layers = nn.ModuleList(
            [PosAttnDecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): token ids, in `[0, vocab_size)`.
        attention_mask (`torch.Tensor` of shape `(batch, past + seq)`): 1 for real tokens, 0 for padding. Left
            padding is fine: positions are counted from each row's first real token.
        token_type_ids (`torch.LongTensor` of shape `(batch, seq)`): segment of each token, in
            `[0, type_vocab_size)`; all 0 when not given.
        position_ids (`torch.LongTensor` of shape `(batch, seq)` or `(batch, past + seq)`): overrides the positions
            derived from the mask; with `past + seq` columns, the cached tokens' positions come first (`generate`
            passes them so), which is how a score bias knows its keys' positions where they skip.
        cache (`Cache`): keys and values of earlier tokens (a `DynamicCache` is made when `use_cache`).
        inputs_embeds (`torch.Tensor` of shape `(batch, seq, hidden)`): instead of `input_ids`.
        """
        sizes = checked_sizes(self.config, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids, cache)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        past_positions = None
        if position_ids is None:
            position_ids = self.position_ids_from_mask(attention_mask, sizes.past_length, sizes.query_length, device)
        elif position_ids.shape[-1] > sizes.query_length:
            past_positions, position_ids = position_ids[:, : sizes.past_length], position_ids[:, sizes.past_length :]

        hidden_states = self.embeddings(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            token_type_ids=token_type_ids,
            position_embeds=self.positions.embed(position_ids),
        )
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )
        check_numeric_range(type(self.positions), self.config, position_ids, compute_dtype(hidden_states))
        rotation, position_bias = self.inside_attention(
            position_ids, attention_mask, sizes, hidden_states.dtype, past_positions
        )

        for decoder_layer in self.layers:
            # The bias goes in by position: under gradient checkpointing only positional tensors are the checkpoint's
            # inputs, and a learned bias (T5, KERPLE, FIRE) shared by every layer must take its gradient from each.
            hidden_states = decoder_layer(
                hidden_states,
                position_bias,
                attention_mask=causal_mask,
                rotation=rotation,
                cache=cache,
                **kwargs,
            )

        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden_states), cache=cache)

    def inside_attention(
        self, position_ids, attention_mask, sizes: Sizes, dtype, past_positions=None
    ) -> tuple[Rotation | None, torch.Tensor | DistanceBias | None]:
        """What the position scheme does inside attention, computed once for all layers: the rotation of queries and
        keys, and the bias of the scores (`past_positions`: the cached keys' positions, when the caller gave them)."""
        rotation = self.positions.rotation(position_ids)
        position_bias = self.score_bias(position_ids, attention_mask, sizes, dtype, past_positions)
        return (rotation.to(dtype) if rotation is not None else None), position_bias

    def score_bias(
        self, position_ids, attention_mask, sizes: Sizes, dtype, past_positions=None
    ) -> torch.Tensor | DistanceBias | None:
        """The bias of the scores: a `[batch, heads, queries, keys]` tensor, or, under flex_attention and for a bias
        of the distance alone, a `[heads, distances]` table that the kernel reads entry by entry (`DistanceBias`): a
        T x T bias per forward is what makes prefill memory grow faster than T otherwise."""
        if not self.biases_scores:  # then nothing of size queries x keys is built
            return None
        # How far back a key lies from a query is the difference of their positions: slots in the cache would say the
        # same for ordinary inputs (left padding is masked, packed documents cannot see each other), but not for
        # positions that skip (randomized positions in training, Ruoss et al. 2023).
        key_positions = self.key_positions(position_ids, attention_mask, sizes, past_positions)
        if self.config._attn_implementation == "flex_attention":
            # Positions that never skip (left padding, packed documents, a cache) put every key a query can see as
            # many slots back as positions back, so the kernel reads distances from slots; positions that skip are
            # looked up. Compiled graphs take positions that never skip.
            skips = not torch.compiler.is_compiling() and bool((key_positions.diff(dim=-1) > 1).any())
            length = max(sizes.key_length, position_range(position_ids)[1] + 1) if skips else sizes.key_length
            table = self.positions.distance_table(length, position_ids.device)
            if table is not None:
                rows = (sizes.batch, -1)
                positions = (position_ids.expand(rows), key_positions.expand(rows)) if skips else None
                return DistanceBias(table.to(dtype).expand(self.config.num_attention_heads, -1),
                                    torch.tensor(sizes.past_length, device=position_ids.device), positions)
        distance = position_ids[:, :, None] - key_positions[:, None, :]
        position_bias = self.positions.attention_bias(distance, position_ids)
        if position_bias is not None:
            position_bias = position_bias.to(dtype).expand(sizes.batch, -1, -1, -1)
        return position_bias

    @staticmethod
    def key_positions(position_ids, attention_mask, sizes: Sizes, past_positions=None) -> torch.LongTensor:
        """`[batch or 1, keys]`: the position of every key the new tokens attend to. The cached ones' are those
        given (`past_positions`), else counted over a 2-D mask, as `generate` counts them (else 0, 1, ...), then
        come the new tokens' own; a static cache's slots not yet written (masked) continue from there."""
        if torch.compiler.is_compiling():
            # A compiled graph cannot branch on the length of a static cache (a tensor): every key's position is
            # counted over the mask (as for the queries), or is its slot.
            if attention_mask is not None and attention_mask.ndim == 2:
                keys = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                keys = torch.arange(sizes.key_length, device=position_ids.device)[None]
            return PosAttnModel.written_and_unwritten(keys, sizes.key_length)
        keys = position_ids
        if sizes.past_length:
            if past_positions is not None:
                past = past_positions
            elif attention_mask is not None and attention_mask.ndim == 2:
                past = (attention_mask[:, : sizes.past_length].long().cumsum(-1) - 1).clamp(min=0)
            else:
                past = torch.arange(sizes.past_length, device=position_ids.device)[None]
            rows = max(past.shape[0], position_ids.shape[0])
            keys = torch.cat((past.expand(rows, -1), position_ids.expand(rows, -1)), dim=-1)
        return PosAttnModel.written_and_unwritten(keys, sizes.key_length)

    @staticmethod
    def written_and_unwritten(keys, key_length: int) -> torch.LongTensor:
        """`keys`, followed by positions for a static cache's slots not yet written (masked), up to `key_length`."""
        unwritten = key_length - keys.shape[-1]
        if unwritten > 0:
            keys = torch.cat((keys, keys[:, -1:] + 1 + torch.arange(unwritten, device=keys.device)), dim=-1)
        return keys

    @staticmethod
    def position_ids_from_mask(attention_mask, past_length, query_length, device) -> torch.LongTensor:
        """Positions of the new tokens: counted over the real tokens of each row when a 2-D mask covers the past
        and new tokens (so left padding does not shift them), else `past_length, past_length + 1, ...`."""
        if attention_mask is not None and attention_mask.ndim == 2:
            positions = attention_mask.long().cumsum(-1) - 1
            return positions[:, -query_length:].clamp(min=0)
        return (torch.arange(query_length, device=device) + past_length).unsqueeze(0)


class PosAttnForCausalLM(PosAttnPreTrainedModel, GenerationMixin):
    """The language model: the decoder, then a head that scores every vocabulary token as the next one.

    Self-attention is what lets the prediction depend on context: after "I do not like", the last token's query
    finds "not" among the keys, and the head scores "hate" over "like". The head shares its weight with the token
    embedding (`tie_word_embeddings`), as in GPT-2.
    """

    _tied_weights_keys = {"lm_head.weight": "model.embeddings.word_embeddings.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.model = PosAttnModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        # A tied head is the embedding: saving leaves it out, so a checkpoint without it is whole. The Trainer reads
        # this set when it resumes from a checkpoint: the keys in it are tied again, not reported as missing.
        self._keys_to_ignore_on_save = set(self.all_tied_weights_keys)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch, seq)`): the input ids themselves (shifted inside, so that
            position t is scored on token t + 1); -100 marks positions to ignore.
        logits_to_keep (`int` or `torch.Tensor`): compute logits for the last `logits_to_keep` positions only
            (0: all); `generate` asks for 1.
        """
        if labels is not None and (input_ids is not None or inputs_embeds is not None):  # else: the model says
            check_labels(labels, input_ids, inputs_embeds, self.config.vocab_size)
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _get_stopping_criteria(self, *args, **kwargs):
        """transformers' criteria, less its reminder that generation went past `max_position_embeddings` ("...
        exceeded the model's predefined maximum length") for a scheme that runs at any length, whose tables there
        are only a cache, extended as needed: the warning would not be true of this model. A length-bounded scheme
        never gets there (`_validate_generated_length`)."""
        criteria = super()._get_stopping_criteria(*args, **kwargs)
        if POSITION_SCHEMES[self.config.position_embedding_type].max_length(self.config) is None:
            for criterion in criteria:
                if isinstance(criterion, MaxLengthCriteria):
                    criterion.max_position_embeddings = None
        return criteria

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, **kwargs):
        """`generate`'s inputs for one step, with the positions of every token so far (the cached ones first),
        where transformers hands the model the new tokens' alone.

        `generate` continues the positions it was given by one per new token, after their end. A caller decoding on
        positions that skip (a model trained on randomized positions, Ruoss et al. 2023) gives the positions of the
        whole sequence it will write, prompt and new tokens: each step takes the ones up to its last token, so the
        new tokens read the drawn positions, and the continuation is never reached. The cached tokens' positions go
        along because a score bias (ALiBi, T5, KERPLE, FIRE) measures distances from its keys' positions, which
        the cache's slots do not give where positions skip. A static cache keeps transformers' way: compiled graphs
        take positions that never skip (`PosAttnModel.key_positions`)."""
        position_ids = kwargs.pop("position_ids", None)
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, **kwargs
        )
        if position_ids is None or getattr(cache, "is_compileable", False):
            if position_ids is not None:
                model_inputs["position_ids"] = position_ids[..., -self.step_length(model_inputs) :].contiguous()
            return model_inputs
        past = cache.get_seq_length() if isinstance(cache, Cache) else 0
        model_inputs["position_ids"] = position_ids[..., : past + self.step_length(model_inputs)].contiguous()
        return model_inputs

    @staticmethod
    def step_length(model_inputs) -> int:
        """How many new tokens this step of `generate` feeds the model (as ids, or as embeddings on the first)."""
        new = model_inputs.get("input_ids")
        return (new if new is not None else model_inputs["inputs_embeds"]).shape[1]

    def _validate_generated_length(self, generation_config, input_ids_length, has_default_max_length):
        """Also refuse, before the first token, a generation that would run past the positions the scheme has (learned
        positions: `max_position_embeddings`); it would otherwise fail only when it gets there."""
        super()._validate_generated_length(generation_config, input_ids_length, has_default_max_length)
        limit = length_limit(self.config, self.dtype)
        if limit is not None and generation_config.max_length > limit.positions:
            raise ValueError(
                f"generation would reach {generation_config.max_length} tokens (an input of {input_ids_length} and "
                f"{generation_config.max_length - input_ids_length} new ones), past {limit.why}. Ask for at most "
                f"{max(limit.positions - input_ids_length, 0)} new tokens (max_new_tokens), or shorten the input."
            )


class PosAttnForSequenceClassification(PosAttnPreTrainedModel):
    """A label (or a regression value) per text or text pair, scored at its last real token: in a causal model
    it is the only one that has attended to the whole input. Sentence pairs are where segment embeddings help:
    give sentence B `token_type_ids=1`.

    Not transformers' `GenericForSequenceClassification`: that one finds the last token by the pad id (a real token
    equal to it, or a model without one, picks the wrong token) where this one reads the attention mask, and builds
    its decoder through `AutoModel`, which does not know this model where it is loaded as remote code."""

    def __init__(self, config: PosAttnConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = PosAttnModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch,)`): class ids in `[0, num_labels)` (or floats for
            regression, when `num_labels == 1`).
        """
        if labels is not None and not labels.is_floating_point() and self.num_labels > 1 \
                and self.config.problem_type in (None, "single_label_classification"):
            refuse_bad_values(outside("labels", labels, self.num_labels, f"class labels index the num_labels="
                                      f"{self.num_labels} classes of the model (config.num_labels)"))
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.score(outputs.last_hidden_state)
        batch_size, seq_length = logits.shape[:2]

        # The rightmost real token of each row, whichever side the padding is on.
        if attention_mask is not None and attention_mask.ndim == 2:
            real = attention_mask[:, -seq_length:].to(logits.device, torch.int32)
        elif input_ids is not None and self.config.pad_token_id is not None:
            real = (input_ids != self.config.pad_token_id).to(logits.device, torch.int32)
        else:
            real = torch.ones(batch_size, seq_length, dtype=torch.int32, device=logits.device)
        last_token = (torch.arange(seq_length, device=logits.device, dtype=torch.int32) * real).argmax(-1)
        pooled_logits = logits[torch.arange(batch_size, device=logits.device), last_token]

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config)

        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# transformers' tables of its models by class name, which the Auto classes' `register` does not fill. The Trainer reads
# the causal LM one to decide whether the logits at position t are scored against the label at t + 1 when it computes
# the loss itself (label smoothing: `label_smoothing_factor`); without it label smoothing would score each position
# against its own token. transformers' tests read the others to tell a bare model (no loss) from one with a head. Here
# rather than in the package's registration, so that remote code fills them too.
MODEL_MAPPING_NAMES.setdefault(PosAttnConfig.model_type, PosAttnModel.__name__)
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.setdefault(PosAttnConfig.model_type, PosAttnForCausalLM.__name__)
MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.setdefault(PosAttnConfig.model_type,
                                                           PosAttnForSequenceClassification.__name__)


__all__ = [
    "PosAttnPreTrainedModel",
    "PosAttnModel",
    "PosAttnForCausalLM",
    "PosAttnForSequenceClassification",
]
