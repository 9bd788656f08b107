"""The ideas of the lesson on attention that the demos follow, runnable (`posattn demo lookup`, `posattn demo context`):
each prints what it shows and draws it.

1. **Attention is a dictionary lookup** (`lookup_demo`). A Python dict maps a key to a value; attention does the
   same with vectors: `softmax(Q Kᵀ / T) V`. With one-hot keys, queries and values the lookup is exact; softmax
   turns scores into weights, and a lower temperature `T` sharpens them; keys that are alike (embeddings, not
   one-hot vectors) give a blend of their values, which is how a word never seen can still be "translated".
2. **Context decides the next word** (`context_demo`). In a toy language, "not like" (or "never like") says
   "hate", "do like" (or "really like") says "like": after "i not like tea , i" comes "hate", after "i do like
   tea , i" comes "like". A tiny hf_posattn model learns it with the Hugging Face Trainer in seconds; the next word
   is the argmax of the softmax of its last token's logits, and the last token's attention falls on the word that
   decides it.
"""

import itertools
import os
import random
import tempfile
import time

import torch

from .plots import attention_weights, pyplot, save


# ---- 1. attention as a dictionary lookup ----

# A French-English dictionary, as in the lesson: keys are French words, values English ones.
DICTIONARY = {"chat": "cat", "chien": "dog", "maison": "house", "voiture": "car"}
ENGLISH = sorted(DICTIONARY.values())
TEMPERATURES = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.01)
# Embeddings instead of one-hot vectors: features (animal, small, building, vehicle). "chaton" (kitten) is not in
# the dictionary; its embedding is close to "chat" and, less, to "chien".
FEATURES = ("animal", "small", "building", "vehicle")
EMBEDDINGS = {"chat": [1.0, 1.0, 0.0, 0.0], "chien": [1.0, 0.3, 0.0, 0.0], "maison": [0.0, 0.0, 1.0, 0.0],
              "voiture": [0.0, 0.0, 0.0, 1.0], "chaton": [0.8, 1.2, 0.0, 0.0]}
BLEND_QUERY = "chaton"
BLEND_TEMPERATURE = 0.1


def one_hot(index: int, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), size).to(torch.float64)


def attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, temperature: float = 1.0):
    """`(softmax(Q Kᵀ / T) V, weights)`: what the model's attention computes for one head (with T = sqrt(d))."""
    weights = torch.softmax(queries @ keys.T / temperature, dim=-1)
    return weights @ values, weights


def lookup_demo(output: str = "lookup.png") -> dict:
    """Print and draw the three steps of the lookup; returns the numbers (for tests and notebooks)."""
    french = list(DICTIONARY)
    keys = torch.stack([one_hot(i, len(french)) for i in range(len(french))])  # one row per French word
    values = torch.stack([one_hot(ENGLISH.index(DICTIONARY[word]), len(ENGLISH)) for word in french])
    word = "chien"
    query = one_hot(french.index(word), len(french))[None]

    print("1. A dictionary lookup with one-hot vectors: keys = French words, values = English words.")
    scores = query @ keys.T  # orthogonal keys: 1 for the matching key, 0 for every other
    hard = scores @ values
    print(f"   query '{word}':  q·Kᵀ = {scores[0].tolist()}  ->  (q·Kᵀ)·V = {hard[0].tolist()} = "
          f"'{ENGLISH[int(hard.argmax())]}' (English: {', '.join(ENGLISH)})")
    every = keys @ keys.T @ values  # all queries at once: Q = K
    print(f"   all queries at once, Q = K:  Q·Kᵀ is the identity, so Q·Kᵀ·V = V exactly: "
          f"{bool(torch.equal(every, values))}")

    print("2. Softmax turns the scores into weights that sum to 1; the temperature T sets how sharp they are:")
    weight_on_match = {}
    for temperature in TEMPERATURES:
        retrieved, weights = attend(query, keys, values, temperature)
        weight_on_match[temperature] = float(weights[0, french.index(word)])
        print(f"   T = {temperature:<5}  weight on '{word}' = {weight_on_match[temperature]:.6f}   "
              f"softmax(q·Kᵀ/T)·V = [{', '.join(f'{x:.4f}' for x in retrieved[0].tolist())}]")
    sharp, _ = attend(query, keys, values, TEMPERATURES[-1])
    print(f"   at T = {TEMPERATURES[-1]} the soft lookup returns '{DICTIONARY[word]}' exactly "
          f"(largest error {float((sharp - values[french.index(word)]).abs().max()):.1e})")

    print(f"3. Embeddings instead of one-hot vectors (features: {', '.join(FEATURES)}): '{BLEND_QUERY}' (kitten) is "
          f"not a key, but it is like 'chat' and a little like 'chien':")
    embedded_keys = torch.nn.functional.normalize(torch.tensor([EMBEDDINGS[w] for w in french], dtype=torch.float64), dim=-1)
    blend_query = torch.nn.functional.normalize(torch.tensor([EMBEDDINGS[BLEND_QUERY]], dtype=torch.float64), dim=-1)
    blended, blend_weights = attend(blend_query, embedded_keys, values, BLEND_TEMPERATURE)
    print(f"   weights (T = {BLEND_TEMPERATURE}): " + ", ".join(f"{w} {x:.3f}" for w, x in zip(french, blend_weights[0].tolist())))
    print("   retrieved value, a blend: " + " + ".join(
        f"{x:.3f}·{e}" for e, x in zip(ENGLISH, blended[0].tolist()) if x > 0.001))

    draw_lookup(output, french, keys, weight_on_match, blend_weights[0], blended[0])
    print(f"wrote {output}")
    return {"hard": hard[0], "values": values[french.index(word)], "every": every, "all_values": values,
            "weight_on_match": weight_on_match, "sharp": sharp[0], "blend_weights": dict(zip(french, blend_weights[0].tolist())),
            "blend": dict(zip(ENGLISH, blended[0].tolist()))}


def draw_lookup(output, french, keys, weight_on_match, blend_weights, blended) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(16, 4), layout="constrained")
    scores = (keys @ keys.T).numpy()
    axes[0].imshow(scores, cmap="Blues", vmin=0, vmax=1)
    axes[0].set_xticks(range(len(french)), french)
    axes[0].set_yticks(range(len(french)), french)
    for (row, column), value in zip(itertools.product(range(len(french)), repeat=2), scores.ravel()):
        axes[0].text(column, row, f"{value:g}", ha="center", va="center", color="white" if value else "black")
    axes[0].set(title="one-hot: Q·Kᵀ = I, so Q·Kᵀ·V = V exactly", xlabel="key", ylabel="query")

    temperatures = list(weight_on_match)
    axes[1].semilogx(temperatures, list(weight_on_match.values()), "o-")
    axes[1].axhline(1 / len(french), color="gray", linestyle=":", label="uniform: 1/4")
    axes[1].invert_xaxis()
    axes[1].set(title="weight on the matching key vs temperature", xlabel="temperature T (lower: sharper)",
                ylabel="softmax weight", ylim=(0, 1.05))
    axes[1].legend(fontsize=8)

    axes[2].bar(french, blend_weights.numpy(), color="tab:orange")
    axes[2].set(title=f"query '{BLEND_QUERY}' (not a key): weights, T = {BLEND_TEMPERATURE}", ylabel="softmax weight",
                ylim=(0, 1))
    axes[3].bar(ENGLISH, blended.numpy(), color="tab:green")
    axes[3].set(title="retrieved value: cat and dog, blended", ylabel="weight in the value", ylim=(0, 1))
    return save(figure, output)


# ---- 2. context decides the next word ----

SUBJECTS = ("i", "you", "we", "they")
OBJECTS = ("tea", "rain", "cats", "music", "books", "snow")
# The deciding word, and what "<it> like" says. (A verb that the answer must copy, or an XOR of two words, takes a
# model of this size several times longer to learn: not seconds.)
MEANING = {"do": "like", "not": "hate", "really": "like", "never": "hate"}
DECIDING_WORD = 1  # its index in a prompt: subject, deciding word, "like", object, ",", subject
REPETITIONS = 30  # of every sentence in the training text, shuffled
BLOCK, BATCH = 32, 16  # tokens per training block (about 2.5 sentences), blocks per step
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


def context_demo(output: str = "context.png", output_dir: str | None = None, position: str = "sinusoidal",
                 steps: int = 200, seed: int = 0, overwrite: bool = False) -> dict:
    """Train the tiny model on the toy language (in `output_dir`, replacing the model there if `overwrite`; else in
    a temporary folder), print its predictions and the last token's attention, and draw them. Returns the numbers
    (for tests and notebooks)."""
    from .loading import load_model
    from .training import TrainingOptions, train

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
    draw_context(output, shown, position)
    print(f"wrote {output}")
    return {"wrong": wrong, "contexts": len(CASES), "shown": shown, "seconds": seconds}


def draw_context(output: str, shown: list[dict], position: str) -> str:
    plt = pyplot()
    figure, axes = plt.subplots(2, len(shown), figsize=(4 * len(shown), 8), layout="constrained",
                                gridspec_kw={"height_ratios": [3, 1]})
    for column, case in enumerate(shown):
        last = case["last_token_attention"]
        rows = last.reshape(-1, last.shape[-1]).numpy()
        ax = axes[0][column]
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(case["labels"])), case["labels"], rotation=90)
        ax.set_yticks(range(len(rows)), [f"L{layer} H{head}" for layer in range(last.shape[0])
                                         for head in range(last.shape[1])], fontsize=7)
        ax.add_patch(plt.Rectangle((DECIDING_WORD - 0.5, -0.5), 1, len(rows), fill=False, edgecolor="tab:red",
                                   linewidth=2))
        ax.set_title(f"'{case['prompt']}' → {case['word']}\nlast token's attention (red: deciding word)",
                     fontsize=9)
        words = list(case["top"])
        axes[1][column].barh(words[::-1], [case["top"][w] for w in words][::-1], color="tab:purple")
        axes[1][column].set(xlim=(0, 1), xlabel="softmax probability of the next word")
    figure.suptitle(f"context decides the next word: a tiny {position} hf_posattn model", fontsize=11)
    return save(figure, output)
