"""Start from GPT-2: turn a `GPT2LMHeadModel` into a `PosAttnForCausalLM` that computes the same function.

GPT-2 is the special case "learned positions, no segments, no embedding LayerNorm, gelu_new" of this model. The
only differences are in how the weights are stored: GPT-2's `Conv1D` keeps `[in, out]` matrices (ours are
`nn.Linear`, `[out, in]`), and its fused query/key/value projection lists all queries, then all keys, then all
values, where ours lists each head's query, key and value together.

    from hf_posattn import from_gpt2
    model = from_gpt2("path/to/gpt2")          # or a GPT2LMHeadModel instance

    posattn convert SRC_DIR DST_DIR            # the same, saving model (+ tokenizer) to DST_DIR
"""

import torch
from transformers import AutoTokenizer, GPT2LMHeadModel

from ..model.configuration_posattn import PosAttnConfig
from ..model.modeling_posattn import PosAttnForCausalLM


def config_from_gpt2(gpt2_config) -> PosAttnConfig:
    """The PosAttnConfig of the same architecture; refuses GPT-2 options this model does not have."""
    unsupported = {
        "scale_attn_weights": (gpt2_config.scale_attn_weights, True),
        "scale_attn_by_inverse_layer_idx": (gpt2_config.scale_attn_by_inverse_layer_idx, False),
        "add_cross_attention": (gpt2_config.add_cross_attention, False),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(
                f"GPT-2 config has {name}={value!r}; hf_posattn only converts {name}={supported!r} (standard GPT-2)."
            )
    return PosAttnConfig(
        vocab_size=gpt2_config.vocab_size,
        hidden_size=gpt2_config.n_embd,
        num_hidden_layers=gpt2_config.n_layer,
        num_attention_heads=gpt2_config.n_head,
        intermediate_size=gpt2_config.n_inner or 4 * gpt2_config.n_embd,
        hidden_act=gpt2_config.activation_function,
        max_position_embeddings=gpt2_config.n_positions,
        position_embedding_type="learned",
        type_vocab_size=0,
        embedding_layer_norm=False,
        layer_norm_eps=gpt2_config.layer_norm_epsilon,
        hidden_dropout_prob=gpt2_config.resid_pdrop,
        attention_probs_dropout_prob=gpt2_config.attn_pdrop,
        initializer_range=gpt2_config.initializer_range,
        tie_word_embeddings=gpt2_config.tie_word_embeddings,
        bos_token_id=gpt2_config.bos_token_id,
        eos_token_id=gpt2_config.eos_token_id,
        pad_token_id=gpt2_config.pad_token_id,
    )


def heads_side_by_side(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """GPT-2's fused projection outputs all queries, then all keys, then all values; ours outputs each head's query,
    key and value together. Reorder the output features (dim 0) from [3, heads, head_dim] to [heads, 3, head_dim]."""
    rest = qkv.shape[1:]
    return qkv.reshape(3, num_heads, -1, *rest).transpose(0, 1).reshape(-1, *rest)


def state_dict_from_gpt2(gpt2_state: dict, num_layers: int, num_heads: int) -> dict:
    """Rename GPT-2 weights to ours; transpose Conv1D matrices and reorder the fused q/k/v projection per head."""
    sd = {
        "model.embeddings.word_embeddings.weight": gpt2_state["transformer.wte.weight"],
        "model.positions.weight": gpt2_state["transformer.wpe.weight"],
        "model.norm.weight": gpt2_state["transformer.ln_f.weight"],
        "model.norm.bias": gpt2_state["transformer.ln_f.bias"],
        "lm_head.weight": gpt2_state["lm_head.weight"],
    }
    for i in range(num_layers):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            sd[f"{dst}{ours}.weight"] = gpt2_state[f"{src}{theirs}.weight"]
            sd[f"{dst}{ours}.bias"] = gpt2_state[f"{src}{theirs}.bias"]
        for kind, tensor in (("weight", gpt2_state[f"{src}attn.c_attn.weight"].t()),
                             ("bias", gpt2_state[f"{src}attn.c_attn.bias"])):
            sd[f"{dst}self_attn.qkv_proj.{kind}"] = heads_side_by_side(tensor, num_heads)
        for ours, theirs in (("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                             ("mlp.down_proj", "mlp.c_proj")):
            sd[f"{dst}{ours}.weight"] = gpt2_state[f"{src}{theirs}.weight"].t()
            sd[f"{dst}{ours}.bias"] = gpt2_state[f"{src}{theirs}.bias"]
    return {name: tensor.contiguous() for name, tensor in sd.items()}


def from_gpt2(gpt2_model_or_path) -> PosAttnForCausalLM:
    """A `PosAttnForCausalLM` computing the same function as a GPT-2 LM (instance, local folder or Hub id)."""
    gpt2 = gpt2_model_or_path
    if not isinstance(gpt2, GPT2LMHeadModel):
        # Safetensors only, as for hf_posattn's own models: a pytorch_model.bin is a pickle, which can run code when
        # loaded. To convert one you trust, load it yourself (`use_safetensors=False`) and pass the model.
        gpt2 = GPT2LMHeadModel.from_pretrained(gpt2_model_or_path, use_safetensors=True)
    config = config_from_gpt2(gpt2.config)
    model = PosAttnForCausalLM(config).to(device=gpt2.device, dtype=gpt2.dtype)
    state = state_dict_from_gpt2(gpt2.state_dict(), config.num_hidden_layers, config.num_attention_heads)
    model.load_state_dict(state, strict=True)
    model.train(gpt2.training)
    return model


def load_gpt2(source: str) -> GPT2LMHeadModel:
    """The GPT-2 in `source`, checked: its config.json says model_type gpt2, and its weights hold every tensor of
    the model and no other (`from_pretrained` would fill in what is missing at random)."""
    from transformers import AutoConfig

    from .loading import load_checked

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:  # no such folder or model, a damaged or unknown config
        raise ValueError(f"cannot convert {source}: {error}") from None
    if config.model_type != "gpt2":
        raise ValueError(f"cannot convert {source}: its config.json says model_type {config.model_type!r}, and only "
                         f"GPT-2 models ('gpt2') are converted.")
    # Safetensors only, as for hf_posattn's own models: a pytorch_model.bin is a pickle, which can run code.
    return load_checked(GPT2LMHeadModel, source, config=config, use_safetensors=True)


def convert(source: str, destination: str, overwrite: bool = False) -> None:
    """Convert the GPT-2 in `source` and save it, with its tokenizer when it has one, in `destination`: staged
    beside it and swapped in whole (a model there is replaced only with `overwrite`, anything else never)."""
    from ..common import notice
    from ..files import normal_modes, resolve_path, resolve_source, writing
    from ..runfolder import claim, plan_run

    source, destination = resolve_source(source, "SRC"), resolve_path(destination, "DST")  # a Hub id stays as given
    plan = plan_run(destination, overwrite=overwrite, stage_new=True, flag="DST")
    gpt2 = load_gpt2(source)
    try:
        model = from_gpt2(gpt2)
    except ValueError as error:  # a GPT-2 this model cannot express
        raise ValueError(f"cannot convert {source}: {error}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        tokenizer = None
        notice(f"no tokenizer found in {source}; saving the model only")
    with claim(plan) as folder, writing(f"the model in {destination}"):
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        normal_modes(folder)  # safetensors writes its weights 0600
    notice(f"saved hf_posattn model to {destination}")
