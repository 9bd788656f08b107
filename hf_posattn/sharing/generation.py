"""Text from a trained model, through transformers' `text-generation` pipeline (optionally streamed as it comes)."""

from transformers import TextStreamer, pipeline, set_seed

from .. import arguments
from ..arguments import optional
from ..common import MAX_NEW_TOKENS
from ..data.tokenizers import check_known_tokens


# The command line's bounds (`posattn generate`); transformers checks the ranges of the sampling settings.
@arguments.checked(prompt=arguments.text, max_new_tokens=arguments.integer, temperature=optional(arguments.number),
                   top_p=optional(arguments.number), top_k=optional(arguments.bounded(arguments.integer, minimum=0)),
                   greedy=arguments.flag, seed=arguments.seed, stream=arguments.flag)
def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS, temperature: float | None = None,
                  top_p: float | None = None, top_k: int | None = None, greedy: bool = False, seed: int = 0,
                  stream: bool = False) -> str:
    """The prompt and its continuation. Sampling unless `greedy`, with the model's generation config
    (`generation_config.json`: temperature 0.8, top-p 0.95, no top-k for models `posattn train` saves) where
    `temperature`, nucleus `top_p` or `top_k` are not given (0 turns top-k off); `stream=True` prints the text to
    stdout token by token while it is generated. A prompt that is mostly words the tokenizer does not know is
    refused (`check_known_tokens`)."""
    from ..data.tokenizers import check_known_tokens

    if not prompt:
        raise ValueError("the prompt is empty: give some text for the model to continue, e.g. 'ROMEO:'.")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # as the pipeline reads it
    check_known_tokens(tokenizer, prompt_ids, "the prompt")
    set_seed(seed)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    options = {"max_new_tokens": max_new_tokens, "do_sample": not greedy}
    if greedy:  # unset the sampling settings of the model's generation config, which greedy search would ignore
        options.update(temperature=None, top_p=None, top_k=None)
    else:
        given = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
        options.update({name: value for name, value in given.items() if value is not None})
    if stream:
        options["streamer"] = TextStreamer(generator.tokenizer, skip_special_tokens=True)
    ids = generator(prompt, return_tensors=True, **options)[0]["generated_token_ids"]
    return prompt + continuation(tokenizer, prompt_ids, ids[len(prompt_ids):])


def continuation(tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text that `new_ids` add after the prompt: what decoding prompt and continuation together adds to the
    prompt decoded alone. Decoding the new tokens alone would drop what goes between the two, which a word-level
    tokenizer (a task's) puts between words: "the pass key is" and "7" would read "the pass key is7"."""
    whole = tokenizer.decode([*prompt_ids, *new_ids], skip_special_tokens=True)
    before = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    return whole[len(before):] if whole.startswith(before) else tokenizer.decode(new_ids, skip_special_tokens=True)
