"""Make saved folders with the code of the current main (before the model moved into its own folder)."""
import os
import sys

import torch
from safetensors.torch import save_file

from hf_posattn import PosAttnConfig, PosAttnForCausalLM

root = sys.argv[1]
ids = torch.tensor([[5, 9, 17, 3, 44, 8, 21, 30, 2, 11, 7, 19]])
logits = {}
for scheme in ("sinusoidal", "rotary", "t5", "fire"):
    torch.manual_seed(0)
    config = PosAttnConfig(position_embedding_type=scheme, vocab_size=64, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = PosAttnForCausalLM(config).eval()
    folder = os.path.join(root, scheme)
    model.save_pretrained(folder)
    with torch.no_grad():
        logits[scheme] = model(ids).logits[0].contiguous()
logits["input_ids"] = ids[0]
save_file(logits, os.path.join(root, "logits.safetensors"))
