"""Text from a trained model, through transformers' `text-generation` pipeline (optionally streamed as it comes)."""

from transformers import TextStreamer, pipeline, set_seed


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_p: float = 0.95, top_k: int | None = None, greedy: bool = False, seed: int = 0,
                  stream: bool = False) -> str:
    """The prompt and its continuation. Sampling (temperature, nucleus `top_p`, `top_k`) unless `greedy`;
    `stream=True` prints the text to stdout token by token while it is generated."""
    if not prompt:
        raise ValueError("the prompt is empty: give some text for the model to continue, e.g. 'ROMEO:'.")
    set_seed(seed)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    options = {"max_new_tokens": max_new_tokens, "do_sample": not greedy}
    if greedy:  # unset the sampling settings of the model's generation config, which greedy search would ignore
        options.update(temperature=None, top_p=None, top_k=None)
    else:
        options.update(temperature=temperature, top_p=top_p, top_k=top_k or 0)
    if stream:
        options["streamer"] = TextStreamer(generator.tokenizer, skip_special_tokens=True)
    return generator(prompt, **options)[0]["generated_text"]
