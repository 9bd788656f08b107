"""The model: exactly the files `save_pretrained` copies beside the weights as remote code (configuration, modeling,
positional, input checks). They import only torch, transformers and each other, so that a saved folder loads with
`trust_remote_code=True` where hf_posattn is not installed."""
