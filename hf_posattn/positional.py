"""The position schemes: how a transformer learns *where* each token is.

Self-attention compares every query with every key, whatever their order: without positions, "dog bites man"
and "man bites dog" look alike (only the causal mask of a decoder tells order). Each class below is one answer
to that, behind one interface. The model asks every scheme the same three questions, once per forward pass,
and a scheme answers `None` to the questions it has nothing to say about:

- `embed(position_ids)`: what do I add to the token embeddings at these positions? (sinusoidal, learned)
- `rotation(position_ids)`: by which angles do I turn queries and keys? (rotary)
- `attention_bias(query_positions, key_positions)`: what do I add to the attention scores? (ALiBi)

A new scheme (T5 buckets, xPos, FIRE, ...) is one more class here, one more entry in `POSITION_SCHEMES`, and
its name in `configuration_posattn.POSITION_EMBEDDING_TYPES`; attention and embeddings stay as they are.

This file travels with saved models as remote code: it imports only torch and transformers.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init


class PositionScheme(nn.Module):
    """Base class: a scheme that says nothing. Subclasses override the questions they answer.

    `adds_attention_bias` says, without building anything, whether `attention_bias` answers: the model refuses the
    attention kernels that cannot take a bias (flash-attention) for such a scheme.

    Tables a scheme computes (a sin/cos table, rotary frequencies, ALiBi slopes) are non-persistent buffers:
    not stored in checkpoints, and rebuilt by `initialize`, which the model's `_init_weights` calls, so that a
    model loaded with `from_pretrained` gets them back exactly.
    """

    adds_attention_bias = False

    def embed(self, position_ids: torch.LongTensor) -> torch.Tensor | None:
        """A `[batch, seq, hidden]` tensor to add to the token embeddings, or None."""
        return None

    def rotation(self, position_ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(cos, sin)`, each `[batch, seq, head_dim]`, to rotate queries and keys with, or None."""
        return None

    def attention_bias(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor | None:
        """A `[1, heads, queries, keys]` tensor to add to the attention scores, or None."""
        return None

    def initialize(self, initializer_range: float) -> None:
        """(Re)build this scheme's tables and initialise its parameters, with `transformers.initialization`."""


class NoPositions(PositionScheme):
    """No position information: the model sees a bag of tokens, ordered only by the causal mask.

    Causal decoders can still infer some position from how many tokens a query may see (Haviv et al. 2022), which
    makes this an instructive baseline.
    """

    def __init__(self, config):
        super().__init__()


def position_range(position_ids: torch.Tensor) -> tuple[int, int]:
    """The smallest and the largest position, read from the device in one go (one synchronisation on a GPU)."""
    smallest, largest = torch.stack(position_ids.aminmax()).tolist()
    return smallest, largest


def sinusoidal_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The closed form of Vaswani et al. (2017), for any positions:

        PE(pos, 2i)   = sin(pos / 10000^(2i / dim))
        PE(pos, 2i+1) = cos(pos / 10000^(2i / dim))

    `pos` sets where on each wave a token sits; `i` sets the wave's frequency, from one turn every 2π tokens
    (i = 0) to one every 10000·2π tokens. Computed in float64, so that even far positions are exact in float32.
    """
    pos = positions.detach().to("cpu", torch.float64)[..., None]
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)
    angle = pos / 10000 ** (two_i / dim)
    # Interleave: even features are sines, odd features cosines.
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).to(torch.float32)


class SinusoidalPositions(PositionScheme):
    """Fixed sin/cos waves added to the token embeddings (Vaswani et al. 2017): nothing here is learned.

    A table of the first `max_position_embeddings` positions is kept as a buffer; positions past it are computed
    from the same closed form, so the scheme runs at any length.

    The waves have amplitude 1 while token embeddings start at std `initializer_range` (0.02): added as they are,
    where a token is drowns out what it is, and the model barely learns. Vaswani et al. balance the two by scaling
    token embeddings up by sqrt(d); here the waves are scaled down instead, to `amplitude = initializer_range`, and
    stay there. Not a learned amplitude: trained with Adam, a single scalar moves by about the learning rate at every
    step, a tenth of its starting value at the default rate, and in our runs it ended near zero (-0.0002 after 200
    steps, -0.0065 after 800), leaving a model with almost no position signal; see the README's configuration notes.
    """

    def __init__(self, config):
        super().__init__()
        self.dim = config.hidden_size
        self.amplitude = config.initializer_range
        self.table = nn.Buffer(torch.empty(config.max_position_embeddings, self.dim), persistent=False)

    def initialize(self, initializer_range):
        init.copy_(self.table, self.waves(torch.arange(self.table.shape[0])))

    def waves(self, position_ids: torch.Tensor) -> torch.Tensor:
        """What this scheme adds at `position_ids`, from the closed form: `amplitude · PE(pos)`."""
        return sinusoidal_table(position_ids, self.dim) * self.amplitude

    def embed(self, position_ids):
        # Looking a position up costs one gather; the closed form is only needed outside the table (past its end, or
        # negative positions a caller passed). The check reads the position range, which `torch.compile` cannot
        # branch on: compiled graphs use the table.
        if not torch.compiler.is_compiling():
            smallest, largest = position_range(position_ids)
            if smallest < 0 or largest >= self.table.shape[0]:
                return self.waves(position_ids).to(self.table.device, self.table.dtype)
        return F.embedding(position_ids, self.table)


class LearnedPositions(PositionScheme):
    """One trained vector per position, added to the token embeddings (BERT, GPT-2).

    The model learns whatever position signal helps, but only for the positions it was built with: there is no
    vector for position `max_position_embeddings`, so longer inputs are refused.
    """

    def __init__(self, config):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(config.max_position_embeddings, config.hidden_size))

    def initialize(self, initializer_range):
        init.normal_(self.weight, mean=0.0, std=initializer_range)

    def embed(self, position_ids):
        if not torch.compiler.is_compiling():
            smallest, largest = position_range(position_ids)
            if smallest < 0:
                raise ValueError(f"position_ids contains {smallest}: positions count from 0, the first token's.")
            if largest >= self.weight.shape[0]:
                raise ValueError(
                    f"position {largest} is past max_position_embeddings={self.weight.shape[0]}: learned "
                    f"positions have one trained vector per position and none beyond. Use inputs of at most "
                    f"{self.weight.shape[0]} tokens (e.g. truncate, or evaluate in windows), or a scheme that "
                    f"runs at any length (sinusoidal, rotary, alibi, none)."
                )
        return F.embedding(position_ids, self.weight)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Turn each feature pair (x1, x2), taken from the two halves of the head, by 90 degrees: (-x2, x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """Rotate queries and keys `[batch, heads, seq, head_dim]` by their positions' angles.

    After the rotation, the dot product of a query at position m with a key at position n depends on m - n only:
    the score sees relative position, and nothing is added to the embeddings.
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class RotaryPositions(PositionScheme):
    """Rotary position embedding (Su et al. 2021, RoFormer; used by Llama): queries and keys are rotated.

    Feature pair j of every head turns by `position * rope_theta^(-2j / head_dim)` radians: fast turns for the
    first pairs, slow ones for the last, the same spectrum as the sinusoidal table.
    """

    def __init__(self, config):
        super().__init__()
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rope_theta = config.rope_theta
        self.inv_freq = nn.Buffer(torch.empty(self.head_dim // 2), persistent=False)

    def initialize(self, initializer_range):
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        init.copy_(self.inv_freq, (1.0 / self.rope_theta**exponent).to(torch.float32))

    def rotation(self, position_ids):
        # In float32 whatever the model's dtype: angles of far positions lose their phase in half precision.
        with torch.autocast(device_type=position_ids.device.type, enabled=False):
            angles = position_ids[..., None].float() * self.inv_freq.float()
            angles = torch.cat((angles, angles), dim=-1)
            return angles.cos(), angles.sin()


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The per-head slopes of Press et al. (2022): a geometric sequence starting at 2^(-8/n), for n heads.

    For a head count that is not a power of two, the closest power below gives the first slopes and the
    odd-indexed slopes of the next power fill the rest, as in the paper's reference code.
    """
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    if closest < num_heads:
        extra = [2 ** (-8 * (i + 1) / (2 * closest)) for i in range(2 * closest)]
        slopes += extra[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class AlibiBias(PositionScheme):
    """Attention with Linear Biases (Press et al. 2022): nothing is added to the embeddings; each head subtracts
    `slope * distance` from the score of a query for a key `distance` tokens back.

    Steep heads look locally, shallow heads far; as the penalty only depends on distance, a model trained on short
    inputs keeps working on longer ones ("train short, test long").
    """

    adds_attention_bias = True

    def __init__(self, config):
        super().__init__()
        self.slopes = nn.Buffer(torch.empty(config.num_attention_heads), persistent=False)

    def initialize(self, initializer_range):
        init.copy_(self.slopes, alibi_slopes(self.slopes.shape[0]))

    def attention_bias(self, query_positions, key_positions):
        distance = (query_positions[:, None] - key_positions[None, :]).to(self.slopes.dtype)
        return -(self.slopes[:, None, None] * distance)[None]


# Name in `PosAttnConfig.position_embedding_type` -> scheme.
POSITION_SCHEMES = {
    "sinusoidal": SinusoidalPositions,
    "learned": LearnedPositions,
    "rotary": RotaryPositions,
    "alibi": AlibiBias,
    "none": NoPositions,
}
