"""The lesson, part 1: attention as a soft dictionary lookup. French words are the keys, English words the values, all
one-hot: q·Kᵀ is 1 for the matching key, so (q·Kᵀ)·V is the translation; softmax turns scores into weights, sharper
at a lower temperature; with embeddings, a word that is no key gets a blend of the values.
"""

import torch

from .. import arguments

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


@arguments.checked(temperature=arguments.positive)  # 0 divides by zero; below 0 turns the weights upside down
def attend(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, temperature: float = 1.0):
    """`(softmax(Q Kᵀ / T) V, weights)`: what the model's attention computes for one head (with T = sqrt(d))."""
    weights = torch.softmax(queries @ keys.T / temperature, dim=-1)
    return weights @ values, weights


@arguments.checked(output=arguments.path)
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

    from ..figures.lesson import draw_lookup  # matplotlib, only when a figure is drawn

    draw_lookup(output, french, ENGLISH, keys, weight_on_match, BLEND_QUERY, BLEND_TEMPERATURE, blend_weights[0],
                blended[0])
    print(f"wrote {output}")
    return {"hard": hard[0], "values": values[french.index(word)], "every": every, "all_values": values,
            "weight_on_match": weight_on_match, "sharp": sharp[0], "blend_weights": dict(zip(french, blend_weights[0].tolist())),
            "blend": dict(zip(ENGLISH, blended[0].tolist()))}
