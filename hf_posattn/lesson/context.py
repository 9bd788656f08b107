"""The lesson, part 2: self-attention predicts the next word from its context. A tiny model learns that "i not like
tea , i" is followed by "hate" and "i do like tea , i" by "like", and looks at the deciding word to tell.
"""

import itertools
import os
import random
import tempfile
import time

import torch

from .. import arguments
from ..figures.attention import attention_weights
from ..model.configuration_posattn import DEFAULT_POSITION

BLOCK, BATCH = 32, 16  # tokens per training block (about 2.5 sentences), blocks per step

SUBJECTS = ("i", "you", "we", "they")


OBJECTS = ("tea", "rain", "cats", "music", "books", "snow")


# The deciding word, and what "<it> like" says. (A verb that the answer must copy, or an XOR of two words, takes a
# model of this size several times longer to learn: not seconds.)
MEANING = {"do": "like", "not": "hate", "really": "like", "never": "hate"}


DECIDING_WORD = 1  # its index in a prompt: subject, deciding word, "like", object, ",", subject


REPETITIONS = 30  # of every sentence in the training text, shuffled


CASES = list(itertools.product(SUBJECTS, MEANING, OBJECTS))


SHOWN = [("i", context, "tea") for context in MEANING]


def prompt(subject: str, context: str, obj: str) -> str:
    return f"{subject} {context} like {obj} , {subject}"


def toy_corpus(seed: int) -> str:
    """Every sentence of the toy language, `REPETITIONS` times, shuffled: one line each."""
    sentences = [f"{prompt(s, c, o)} {MEANING[c]} {o} ." for s, c, o in CASES]
    lines = sentences * REPETITIONS
    random.Random(seed).shuffle(lines)
    return "\n".join(lines) + "\n"


def next_word(model, tokenizer, text: str) -> tuple[str, float, dict]:
    """The model's next word for `text`: argmax of the softmax of the last token's logits, its probability, and
    the five most likely words with theirs."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
    with torch.no_grad():
        probabilities = torch.softmax(model(input_ids=ids, use_cache=False).logits[0, -1].float(), dim=-1)
    top = torch.topk(probabilities, 5)
    words = {tokenizer.decode([int(i)]).strip(): float(p) for p, i in zip(top.values, top.indices)}
    best = int(probabilities.argmax())
    return tokenizer.decode([best]).strip(), float(probabilities[best]), words


@arguments.checked(output=arguments.path, output_dir=arguments.optional(arguments.path), position=arguments.text,
                   steps=arguments.integer, seed=arguments.seed, overwrite=arguments.flag)
def context_demo(output: str = "context.png", output_dir: str | None = None, position: str = DEFAULT_POSITION,
                 steps: int = 200, seed: int = 0, overwrite: bool = False) -> dict:
    """Train the tiny model on the toy language (in `output_dir`, replacing the model there if `overwrite`; else in
    a temporary folder), print its predictions and the last token's attention, and draw them. Returns the numbers
    (for tests and notebooks)."""
    from ..sharing.loading import load_model
    from ..training.options import TrainingOptions
    from ..training.run import train

    print("A toy language: 'not like' and 'never like' say 'hate', 'do like' and 'really like' say 'like':")
    for subject, context, obj in SHOWN:
        print(f"   {prompt(subject, context, obj)} {MEANING[context]} {obj} .")
    with tempfile.TemporaryDirectory() as scratch:
        corpus = os.path.join(scratch, "toy.txt")
        with open(corpus, "w") as file:
            file.write(toy_corpus(seed))
        folder = output_dir or os.path.join(scratch, "model")
        start = time.perf_counter()
        result = train(TrainingOptions(output_dir=folder, position=position, data=[corpus], seq_len=BLOCK,
                                       batch_size=BATCH, max_steps=steps, vocab_size=512, seed=seed, eval_steps=steps,
                                       sample_prompt=prompt(*SHOWN[1]), quiet=True, overwrite=overwrite))
        seconds = time.perf_counter() - start
        model, tokenizer = load_model(folder, attn_implementation="eager")
        for word in {*SUBJECTS, *MEANING.keys(), *MEANING.values(), *OBJECTS}:  # one token, one label per word
            assert len(tokenizer(f" {word}", add_special_tokens=False)["input_ids"]) == 1, word
        print(f"\nTrained a {position} hf_posattn model ({model.config.num_hidden_layers} layers x "
              f"{model.config.num_attention_heads} heads, {model.num_parameters() / 1e6:.1f}M parameters) with the "
              f"Trainer: {result.steps} steps of {BATCH * BLOCK} tokens in {seconds:.1f} s (validation perplexity "
              f"{result.perplexity:.2f}).")
        predictions = {case: next_word(model, tokenizer, prompt(*case)) for case in CASES}
        wrong = [prompt(*case) for case in CASES if predictions[case][0] != MEANING[case[1]]]
        print("Next word = argmax(softmax(logits of the last token)):")
        shown = []
        for case in SHOWN:
            word, probability, _ = predictions[case]
            weights, labels = attention_weights(model, tokenizer, prompt(*case))
            last = weights[:, :, -1, :]  # [layers, heads, keys]: what the last token looks at
            heads = [(layer, head) for layer, head in itertools.product(*map(range, last.shape[:2]))
                     if int(last[layer, head].argmax()) == DECIDING_WORD]
            verdict = "right" if word == MEANING[case[1]] else f"wrong (expected {MEANING[case[1]]})"
            print(f"   '{prompt(*case)}' -> {word!r} (p = {probability:.3f}), {verdict}; the last token looks "
                  f"hardest at '{case[1]}' in {len(heads)} of {last.shape[0] * last.shape[1]} heads "
                  f"({', '.join(f'L{layer}H{head}' for layer, head in heads) or 'none'})")
            shown.append({"case": case, "prompt": prompt(*case), "word": word, "probability": probability,
                          "top": predictions[case][2], "last_token_attention": last, "labels": labels,
                          "heads_on_deciding_word": heads})
        print(f"Right next word for {len(CASES) - len(wrong)} of {len(CASES)} contexts (every subject, deciding "
              f"word and object){': wrong for ' + ', '.join(wrong) if wrong else ''}.")
    from ..figures.lesson import draw_context  # matplotlib, only when a figure is drawn

    draw_context(output, shown, position, DECIDING_WORD)
    print(f"wrote {output}")
    return {"wrong": wrong, "contexts": len(CASES), "shown": shown, "seconds": seconds}
