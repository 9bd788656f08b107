"""The checks of a forward call's inputs and of a folder's weights, before anything is computed.

Inputs that would fail deep inside (an IndexError in an embedding, a device-side assert that poisons a whole CUDA
context) or, worse, silently change what the model computes (a mask of the wrong width, a float where ids belong)
are refused here with a ValueError that names the input and says what is allowed. `modeling_posattn.py` calls
`checked_sizes` first thing in every forward; its classes read top to bottom without these.

This file travels with saved models as remote code, beside `modeling_posattn.py`: it imports only torch and
transformers.
"""

import os
from typing import NamedTuple

import torch
from transformers.cache_utils import Cache
from transformers.modeling_utils import load_state_dict

from .configuration_posattn import PosAttnConfig


class Sizes(NamedTuple):
    """The sizes of one forward call: rows, new tokens, tokens already in the cache, and keys attended to (a static
    cache's mask spans all of its slots)."""

    batch: int
    query_length: int
    past_length: int
    key_length: int


class BadValues(NamedTuple):
    """Where `values` (an input of the call) holds values that are not allowed (`bad`, boolean, same shape), and
    what is allowed, for the error message."""

    name: str
    values: torch.Tensor
    bad: torch.Tensor
    allowed: str


def outside(name: str, ids: torch.Tensor, limit: int, fix: str, ignored: int | None = None) -> BadValues:
    """Ids outside [0, limit) (other than `ignored`): they would fail deep inside an embedding lookup or a loss (an
    IndexError on CPU, a device-side assert that poisons the whole CUDA context on a GPU)."""
    bad = (ids < 0) | (ids >= limit)
    if ignored is not None:
        bad &= ids != ignored
    return BadValues(name, ids, bad, f"outside the allowed range [0, {limit}): {fix}")


def refuse_bad_values(*checks: BadValues | None) -> None:
    """Raise a ValueError naming the first input that holds a value it must not. All checks are read from the
    device in one go (one synchronisation on a GPU). Skipped under `torch.compile`, which cannot branch on data."""
    checks = [check for check in checks if check is not None]
    if not checks or torch.compiler.is_compiling():
        return
    for check, found in zip(checks, torch.stack([check.bad.any() for check in checks]).tolist()):
        if found:
            raise ValueError(f"{check.name} contains {check.values[check.bad][0].item()!r}, {check.allowed}")


def refuse_non_integer(**tensors: torch.Tensor | None) -> None:
    """Ids and positions index tables: a float or bool tensor fails deep inside, or is silently truncated."""
    for name, tensor in tensors.items():
        if tensor is not None and (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool):
            raise ValueError(f"{name} has dtype {tensor.dtype}: expected integers (torch.long), e.g. "
                             f"{name}.long() if the values are whole numbers.")


def check_labels(labels: torch.Tensor, input_ids, inputs_embeds, vocab_size: int) -> None:
    """Raise a ValueError unless `labels` are token ids, one per token of the input (or -100, to ignore one): another
    shape would fail inside the loss with torch's batch-size error, which names no input."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels is a {type(labels).__name__}: pass a tensor of token ids, e.g. labels=input_ids.")
    shape = tuple(input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1])
    if tuple(labels.shape) != shape:
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected {shape}, the shape of the input: one "
                         f"label per token (the input ids themselves; -100 for a token to ignore).")
    refuse_non_integer(labels=labels)
    refuse_bad_values(outside("labels", labels, vocab_size, "labels are token ids of the model's vocabulary (or "
                              "-100, for a position to ignore)", ignored=-100))


def check_per_token(name: str, values: torch.Tensor | None, batch_size: int, query_length: int,
                    with_past: int | None = None) -> None:
    """Raise a ValueError unless `values` (token_type_ids, position_ids) holds one value per token of the input, or,
    where `with_past` is given, one per token of the cache and the input (`with_past` of them). Another shape would
    fail deep inside with a broadcasting error, or be broadcast silently."""
    lengths = dict.fromkeys((query_length, with_past or query_length))
    if values is not None and (values.ndim != 2 or values.shape[0] not in (1, batch_size)
                               or values.shape[1] not in lengths):
        also = f" (or {with_past}: one per cached token too)" if len(lengths) > 1 else ""
        raise ValueError(
            f"{name} has shape {tuple(values.shape)}, expected ({batch_size}, {query_length}){also}: one value per "
            f"token of the input."
        )


def check_cache(cache, config: PosAttnConfig, batch_size: int) -> None:
    """Raise a ValueError unless `cache` fits this model and this batch: its layer count, and the batch, heads and
    head size of the keys it holds. Shapes only: nothing is read from the device."""
    if cache is None:
        return
    if not isinstance(cache, Cache):
        raise ValueError(f"cache is a {type(cache).__name__}: pass a transformers Cache, e.g. "
                         f"DynamicCache(config=model.config), or None.")
    if len(cache.layers) not in (0, config.num_hidden_layers):  # 0: a DynamicCache() that adds layers as it goes
        raise ValueError(f"cache has {len(cache.layers)} layers, this model has num_hidden_layers="
                         f"{config.num_hidden_layers}: pass a cache made for this model, e.g. "
                         f"DynamicCache(config=model.config).")
    keys = next((layer.keys for layer in cache.layers if layer.is_initialized and layer.keys.ndim == 4), None)
    expected = (batch_size, config.num_attention_heads, config.head_dim)
    if keys is not None and (keys.shape[0], keys.shape[1], keys.shape[3]) != expected:
        raise ValueError(
            f"cache holds keys of {keys.shape[0]} rows, {keys.shape[1]} heads of size {keys.shape[3]}; this model and "
            f"input need {expected[0]} rows, {expected[1]} heads of size {expected[2]}: pass the cache of an earlier "
            f"call with this model and these rows, or a new one (DynamicCache(config=model.config))."
        )


def check_mask_shape(attention_mask, sizes: Sizes) -> None:
    """Raise a ValueError unless `attention_mask` has one row per sequence and one column per key: the cached tokens
    and the new ones. A mask of another width does not always fail: positions counted over it would be silently
    wrong, and a score bias can broadcast over it. A static cache's mask may span all of its slots (`key_length`)."""
    if attention_mask is None:
        return
    batch_size, query_length, past_length, key_length = sizes
    shape = tuple(attention_mask.shape)
    rows_fit = (len(shape) == 2 and shape[0] == batch_size) or (
        len(shape) == 4 and shape[0] in (1, batch_size) and shape[2] == query_length
    )
    if not rows_fit or not past_length + query_length <= shape[-1] <= key_length:
        raise ValueError(
            f"attention_mask has shape {shape}, expected ({batch_size}, {past_length + query_length}): one row per "
            f"sequence and one column per token, the {past_length} cached ones and the {query_length} new ones (1 "
            f"for a token, 0 for padding); or a 4-D mask of shape ({batch_size}, 1, {query_length}, "
            f"{past_length + query_length})."
        )


def checked_sizes(config: PosAttnConfig, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids,
                  cache) -> Sizes:
    """The sizes of the call, after refusing every input that would fail deep inside or, worse, silently change what
    the model computes; each refusal is a ValueError that names the input and says what is allowed. Nothing has
    been computed or written (to the cache) when it raises."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
    shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
    if len(shape) != 2 or 0 in shape:
        raise ValueError(
            f"Expected input of shape [batch, seq] with batch >= 1 and seq >= 1, got {tuple(shape)}: pass at "
            f"least one row of at least one token (e.g. a BOS token), batched as a 2-D tensor."
        )
    batch_size, query_length = shape
    if torch.compiler.is_compiling():  # the checks below branch on values that compiled graphs take as given
        past_length = cache.get_seq_length() if cache is not None else 0
        return Sizes(batch_size, query_length, past_length, cache_key_length(cache, query_length, past_length))
    if inputs_embeds is not None and inputs_embeds.shape[-1] != config.hidden_size:
        raise ValueError(f"inputs_embeds has {inputs_embeds.shape[-1]} features per token, expected hidden_size="
                         f"{config.hidden_size}.")
    refuse_non_integer(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
    if token_type_ids is not None and config.type_vocab_size == 0:
        raise ValueError("token_type_ids were given but this model has no segment embeddings (type_vocab_size=0): "
                         "drop them, or build the model with type_vocab_size >= 2.")
    check_cache(cache, config, batch_size)
    past_length = cache.get_seq_length() if cache is not None else 0
    sizes = Sizes(batch_size, query_length, past_length, cache_key_length(cache, query_length, past_length))
    check_mask_shape(attention_mask, sizes)
    check_per_token("token_type_ids", token_type_ids, batch_size, query_length)
    # Positions may cover the cached tokens as well: where they skip, the cached keys' cannot be counted.
    check_per_token("position_ids", position_ids, batch_size, query_length, with_past=past_length + query_length)
    # Positions are counted over a 2-D mask (its cumulative sum): a value other than 0 and 1 would shift them. 4-D
    # masks are added to the scores, and may hold any value.
    mask_values = None
    if attention_mask is not None and attention_mask.ndim == 2 and attention_mask.dtype != torch.bool:
        mask_values = BadValues("attention_mask", attention_mask, (attention_mask != 0) & (attention_mask != 1),
                                "expected 1 for a token and 0 for padding (positions are counted over the mask)")
    refuse_bad_values(
        outside("input_ids", input_ids, config.vocab_size, "every id must come from the model's tokenizer")
        if input_ids is not None else None,
        outside("token_type_ids", token_type_ids, config.type_vocab_size,
                f"segment ids index the {config.type_vocab_size} segment embeddings (type_vocab_size)")
        if token_type_ids is not None else None,
        mask_values,
    )
    return sizes


def compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype the attention of a model whose hidden states are `tensor` computes in: autocast's where it is on."""
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


def check_numeric_range(scheme, config: PosAttnConfig, position_ids: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise a ValueError when a position lies past what `scheme` (a PositionScheme class) computes right in `dtype`
    (`numeric_max_length`): its numbers would overflow, and the logits be NaN or silently wrong. Reads the largest
    position from the device only for a scheme that has such a limit."""
    limit = scheme.numeric_max_length(config, dtype)
    if limit is None or torch.compiler.is_compiling():
        return
    largest = int(position_ids.max())
    if largest >= limit:
        wider = scheme.numeric_max_length(config, torch.float32)
        instead = f", or run the model in float32 (up to {wider} positions)" if wider > limit else ""
        raise ValueError(
            f"position {largest} is past the {limit} positions that {scheme.name} positions compute right in "
            f"{dtype}: past them its numbers leave {dtype}'s range and the logits would be NaN or wrong. Use inputs "
            f"of at most {limit} tokens (e.g. truncate, or evaluate in windows){instead}."
        )


def cache_key_length(cache, query_length: int, past_length: int) -> int:
    """How many keys the new tokens attend to: the cached and new ones, or all of a static cache's slots."""
    return cache.get_mask_sizes(query_length, 0)[0] if cache is not None else past_length + query_length


def weights_problem(folder: str, use_safetensors: bool | None) -> str | None:
    """What is wrong with the weights files of a local model folder, as far as reading their headers tells: a
    safetensors file that cannot be read, or pickled weights only where safetensors were asked for. None if nothing."""
    if not os.path.isdir(folder):
        return None
    names = sorted(os.listdir(folder))
    for name in names:
        if name.endswith(".safetensors"):
            try:
                load_state_dict(os.path.join(folder, name), map_location="meta")  # the header only
            except Exception as error:
                return (
                    f"{os.path.join(folder, name)} cannot be read ({error}): the file is truncated or corrupted, e.g. "
                    f"by an interrupted download, copy or save. Save or download the model again."
                )
    if use_safetensors and not any(name.endswith(".safetensors") for name in names) and any(
        name.startswith("pytorch_model") for name in names
    ):
        return (
            f"{folder} holds pickled weights (pytorch_model*.bin) but no model.safetensors. Loading a pickle can run "
            f"code, so hf_posattn reads weights from safetensors only, unless you pass use_safetensors=False for a "
            f"file you trust; or convert it once with `save_pretrained`."
        )
    return None
