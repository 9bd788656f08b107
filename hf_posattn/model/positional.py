"""The position schemes: how a transformer learns *where* each token is.

Self-attention compares every query with every key, whatever their order: without positions, "dog bites man"
and "man bites dog" look alike (only the causal mask of a decoder tells order). Each class below is one answer
to that, behind one interface. The model asks every scheme the same three questions, once per forward pass,
and a scheme answers `None` to the questions it has nothing to say about:

- `embed(position_ids)`: what do I add to the token embeddings at these positions? (sinusoidal, learned)
- `rotation(position_ids)`: how do I transform queries and keys? (rotary, xPos)
- `attention_bias(distance, query_positions)`: what do I add to the attention scores? (ALiBi, T5, KERPLE, FIRE)

The scheme class is also the one place the rest of the package learns about a scheme: its `name` (the value of
`PosAttnConfig.position_embedding_type`), a one-line `description`, a `citation`, the longest input it can take
(`max_length`) and the longest it computes right in a dtype (`numeric_max_length`), the config values it needs
(`config_problem`), what it contributes (`contributes`) and a picture of itself (`panel`). `POSITION_SCHEMES` is
the registry; `register_scheme` adds a class to it at run time, and the config, the model and the tools read it
live.

This file travels with saved models as remote code: it imports only torch and transformers.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update


class Rotation(NamedTuple):
    """How a scheme transforms queries and keys: `q * query_cos + rotate_half(q) * query_sin`, and the same for keys
    with their own tables, each `[batch, seq, head_dim]`. Rotary uses one pair of tables for both; xPos scales the
    query's up and the key's down, so that their product decays with distance."""

    query_cos: torch.Tensor
    query_sin: torch.Tensor
    key_cos: torch.Tensor
    key_sin: torch.Tensor

    def to(self, dtype: torch.dtype) -> "Rotation":
        return Rotation._make(table.to(dtype) for table in self)


class Panel(NamedTuple):
    """What `posattn plot-positions` draws for a scheme: data only, so that this file needs no plotting library.

    `kind` is `"heatmap"` (`data[row, column]` as colours; rows along `ylabel`, columns along `xlabel`) or `"lines"`
    (one curve per row of `data` against the column index along `xlabel`, labelled by `series`).
    """

    title: str
    data: torch.Tensor
    xlabel: str
    ylabel: str
    kind: str
    series: tuple[str, ...] | None = None


EMBEDDING, ROTATION, SCORE_BIAS = "embedding", "rotation", "score bias"


class PositionScheme(nn.Module):
    """Base class: a scheme that says nothing. Subclasses override the questions they answer, and set `name`,
    `description` and `citation`.

    Tables a scheme computes (a sin/cos table, rotary frequencies, ALiBi slopes) are non-persistent buffers: not
    stored in checkpoints, so they are computed in `__init__` (a model built under `no_init_weights` and then given
    a state dict has them) and again by `initialize`, which the model's `_init_weights` calls (a model built on the
    meta device gets them there).
    """

    name: str = ""
    description: str = ""
    citation: str = ""
    # The config fields this scheme reads besides the ones every model reads, with their defaults: a config has
    # them only when its scheme reads them (transformers checks `rope_parameters` where a config has it).
    config_fields: dict = {}
    # Whether `attention_bias` depends on the head and the distance alone, not on the query's own position: the bias
    # is then a `[heads, distances]` table (`distance_table`), which flex_attention reads inside its kernel.
    bias_from_distance_alone: bool = False

    def __init__(self, config):
        super().__init__()

    @classmethod
    def contributes(cls) -> frozenset[str]:
        """What the scheme changes: read from the questions it answers, so it cannot disagree with them."""
        answers = {EMBEDDING: "embed", ROTATION: "rotation", SCORE_BIAS: "attention_bias"}
        return frozenset(part for part, method in answers.items()
                         if getattr(cls, method) is not getattr(PositionScheme, method))

    @classmethod
    def max_length(cls, config) -> int | None:
        """The longest input (in positions) a model with this scheme can take, or None if it runs at any length."""
        return None

    @classmethod
    def numeric_max_length(cls, config, dtype: torch.dtype) -> int | None:
        """The longest input (in positions) whose numbers this scheme computes right when the model computes in
        `dtype`, or None if its numbers stay in range at any length. The model refuses longer inputs."""
        return None

    @classmethod
    def config_problem(cls, config) -> tuple[str, str] | None:
        """`(field, what is allowed)` if `config` holds values this scheme cannot work with, else None."""
        return None

    def embed(self, position_ids: torch.LongTensor) -> torch.Tensor | None:
        """A `[batch, seq, hidden]` tensor to add to the token embeddings, or None."""
        return None

    def rotation(self, position_ids: torch.LongTensor) -> Rotation | None:
        """How to transform queries and keys at `position_ids` (`[batch, seq]`), or None."""
        return None

    def attention_bias(self, distance: torch.Tensor, query_positions: torch.LongTensor) -> torch.Tensor | None:
        """A `[1 or batch, heads or 1, queries, keys]` tensor to add to the attention scores, or None.

        `distance[b, i, j]` (`[1 or batch, queries, keys]`) is how many positions key j lies before query i in row b:
        the difference of their position ids (negative for later keys, which the causal mask hides);
        `query_positions` (`[1 or batch, queries]`) is each query's own position, for schemes that need it.
        """
        return None

    def distance_table(self, length: int, device=None) -> torch.Tensor | None:
        """`[heads or 1, length]`: the bias of a key d = 0, 1, ..., length - 1 tokens back, read from `attention_bias`
        (one query row), if the bias depends on the distance alone (`bias_from_distance_alone`); else None.

        O(length) numbers where `attention_bias` over a whole input takes O(length²). Gradients flow through it to the
        scheme's parameters."""
        if not self.bias_from_distance_alone:
            return None
        distance = torch.arange(length, device=device if device is not None else self.device_hint())[None, None]
        bias = self.attention_bias(distance, distance[:, :, -1])
        return None if bias is None else bias[0, :, 0]

    def initialize(self, initializer_range: float) -> None:
        """(Re)build this scheme's tables and initialise its parameters, with `transformers.initialization`."""

    @torch.no_grad()
    def panel(self, length: int = 64) -> Panel | None:
        """A picture of what the scheme contributes over the first `length` positions (None: nothing to draw)."""
        positions = torch.arange(length, device=self.device_hint())[None]
        parts = self.contributes()
        if EMBEDDING in parts:
            return Panel(f"{self.name}: what is added to the token embeddings", self.embed(positions)[0].float().cpu(),
                         "feature", "position", "heatmap")
        if ROTATION in parts:
            return Panel(f"{self.name}: cosine of the query rotation", self.rotation(positions).query_cos[0].float().cpu(),
                         "feature", "position", "heatmap")
        if SCORE_BIAS in parts:
            # One query at the last position, against every key before it: the bias as a function of distance.
            distance = torch.arange(length, device=positions.device)[None, None]
            bias = self.attention_bias(distance, positions[:, -1:])[0, :, 0].float().cpu()
            return Panel(f"{self.name}: score bias against distance", bias, "distance (tokens back)", "bias", "lines",
                         tuple(f"head {head}" for head in range(bias.shape[0])))
        return None

    def device_hint(self) -> torch.device:
        tensors = [*self.parameters(), *self.buffers()]
        return tensors[0].device if tensors else torch.device("cpu")


class DistanceBias:
    """A score bias that depends on the head and the distance alone, kept as `table[head, distance]` (`[heads,
    distances]`, from `PositionScheme.distance_table`) instead of a `[batch, heads, queries, keys]` tensor.

    Indexed as that tensor would be, `bias[batch, head, query, key]`, it looks the entry up where it is read. The
    distance is the query's position minus the key's: for positions that never skip, query i sits at cache slot
    i + `query_offset` (the tokens already cached) and key j at slot j, so it is i + query_offset - j; for positions
    that skip (randomized positions), it is read from `positions`, `(query_positions [batch, queries], key_positions
    [batch, keys])`. transformers' flex_attention reads `position_bias` exactly so, inside the kernel's score_mod, so
    that no T x T bias is ever made; `score_mod` is the same lookup for torch's `flex_attention` called directly.
    Later keys (negative distances, hidden by the causal mask) read distance 0; `query_offset` is a tensor so that a
    compiled kernel serves every decoding step."""

    def __init__(self, table: torch.Tensor, query_offset: torch.Tensor,
                 positions: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.table = table
        self.query_offset = query_offset
        self.positions = positions

    def __getitem__(self, index):
        batch, head, query, key = index
        if self.positions is None:
            distance = query + self.query_offset - key
        else:
            query_positions, key_positions = self.positions
            distance = query_positions[batch, query] - key_positions[batch, key]
        return self.table[head, distance.clamp(0, self.table.shape[-1] - 1)]

    def score_mod(self, score, batch, head, query, key):
        return score + self[batch, head, query, key]


class SchemeNames(Sequence):
    """The registered scheme names, read live from `POSITION_SCHEMES`: a scheme registered at run time is in it."""

    def __getitem__(self, index):
        return tuple(POSITION_SCHEMES)[index]

    def __len__(self):
        return len(POSITION_SCHEMES)

    def __repr__(self):
        return repr(tuple(POSITION_SCHEMES))


# Name in `PosAttnConfig.position_embedding_type` -> scheme class. Filled by `register_scheme`.
POSITION_SCHEMES: dict[str, type[PositionScheme]] = {}
POSITION_EMBEDDING_TYPES = SchemeNames()


def scheme_field_names() -> set[str]:
    """Every config field that some registered scheme reads besides the common ones (`config_fields`)."""
    return {name for scheme in POSITION_SCHEMES.values() for name in scheme.config_fields}


def schemes_reading(field: str) -> list[str]:
    """The names of the registered schemes that read the config field `field`."""
    return [name for name, scheme in POSITION_SCHEMES.items() if field in scheme.config_fields]


def unbounded_schemes() -> list[str]:
    """The registered schemes that run at any length: no table that ends (`PositionScheme.max_length`) and numbers
    that stay in range however far (`numeric_max_length`)."""
    return [name for name, scheme in POSITION_SCHEMES.items()
            if scheme.max_length.__func__ is PositionScheme.max_length.__func__
            and scheme.numeric_max_length.__func__ is PositionScheme.numeric_max_length.__func__]


class LengthLimit(NamedTuple):
    """The most positions a model takes, and why, phrased to follow "past": "past the 1024 positions that learned
    positions have (max_position_embeddings)"."""

    positions: int
    why: str


def length_limit(config, dtype: torch.dtype = torch.float32, where: str = "") -> LengthLimit | None:
    """The longest input a model of `config` takes in `dtype`, and why: its scheme's table (`max_length`) or the
    positions it computes right in that dtype (`numeric_max_length`), whichever is fewer; None if it runs at any
    length. The one statement of it that generation, evaluation, the study and training's checks give. `where`:
    where the table's size comes from, for a message about options (e.g. " in preset 'tiny'")."""
    scheme = POSITION_SCHEMES[config.position_embedding_type]
    limits = []
    table = scheme.max_length(config)
    if table is not None:
        limits.append(LengthLimit(table, f"the {table} positions that {scheme.name} positions have{where} "
                                         f"(max_position_embeddings)"))
    numeric = scheme.numeric_max_length(config, dtype)
    if numeric is not None:
        limits.append(LengthLimit(numeric, f"the {numeric} positions that {scheme.name} positions compute right in "
                                           f"{dtype}"))
    return min(limits, default=None)


def register_scheme(cls: type[PositionScheme]) -> type[PositionScheme]:
    """Add a scheme class to the registry, under `cls.name`; also usable as a class decorator.

    Registering the same class again is allowed (a module imported twice); another class under a taken name is not.
    """
    if not (isinstance(cls, type) and issubclass(cls, PositionScheme)):
        raise ValueError(f"register_scheme takes a subclass of PositionScheme, got {cls!r}.")
    if not isinstance(cls.name, str) or not cls.name.isidentifier():
        raise ValueError(f"{cls.__name__}.name={cls.name!r} is invalid: set it to the name users will write in "
                         f"position_embedding_type, a word such as 'my_scheme'.")
    taken = POSITION_SCHEMES.get(cls.name)
    if taken is not None and taken.__qualname__ != cls.__qualname__:
        raise ValueError(f"position scheme {cls.name!r} is already registered by {taken.__qualname__}: give "
                         f"{cls.__qualname__} another name.")
    POSITION_SCHEMES[cls.name] = cls
    return cls


def exact_device(tensor: torch.Tensor) -> torch.device:
    """Where to compute a table in float64: the CPU, except for meta tensors (shapes only), which stay meta."""
    return tensor.device if tensor.device.type == "meta" else torch.device("cpu")


def position_range(position_ids: torch.Tensor) -> tuple[int, int]:
    """The smallest and the largest position, read from the device in one go (one synchronisation on a GPU)."""
    smallest, largest = torch.stack(position_ids.aminmax()).tolist()
    return smallest, largest


class NoPositions(PositionScheme):
    """No position information: the model sees a bag of tokens, ordered only by the causal mask.

    Causal decoders can still infer some position from how many tokens a query may see (Haviv et al. 2022), which
    makes this an instructive baseline.
    """

    name = "none"
    description = "no position information: only the causal mask tells order"
    citation = "Haviv et al. 2022, Transformer Language Models without Positional Encodings Still Learn Positional " \
               "Information"


def sinusoidal_table(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """The closed form of Vaswani et al. (2017), for any positions:

        PE(pos, 2i)   = sin(pos / 10000^(2i / dim))
        PE(pos, 2i+1) = cos(pos / 10000^(2i / dim))

    `pos` sets where on each wave a token sits; `i` sets the wave's frequency, from one turn every 2π tokens
    (i = 0) to one every 10000·2π tokens. Computed in float64, so that even far positions are exact in float32.
    `positions`: a tensor of positions; `dim`: an even number of features (a sine and a cosine per frequency).
    """
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be a tensor of positions, e.g. torch.arange(16), got "
                        f"{type(positions).__name__}.")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even integer of at least 2 (each frequency gives a sine and a cosine), "
                         f"got {dim!r}.")
    device = exact_device(positions)
    pos = positions.detach().to(device, torch.float64)[..., None]
    two_i = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    angle = pos / 10000 ** (two_i / dim)
    # Interleave: even features are sines, odd features cosines.
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2).to(torch.float32)


class SinusoidalPositions(PositionScheme):
    """Fixed sin/cos waves added to the token embeddings (Vaswani et al. 2017): nothing here is learned.

    A table of the first `max_position_embeddings` positions is kept as a buffer; positions past it are computed
    from the same closed form, so the scheme runs at any length.

    The waves have amplitude 1 while token embeddings start at std `initializer_range` (0.02): added as they are,
    where a token is would drown out what it is. Two ways to balance them: by default the waves are scaled down to
    `amplitude = initializer_range`, a fixed number (a learned scalar amplitude shrinks towards zero under Adam and
    takes the position signal with it); with `scale_embeddings=True` the token embeddings are scaled up by
    sqrt(hidden_size) instead and the waves keep amplitude 1, as in Vaswani et al. and fairseq.
    """

    name = "sinusoidal"
    description = "fixed sin/cos waves added to the token embeddings"
    citation = "Vaswani et al. 2017, Attention Is All You Need"

    def __init__(self, config):
        super().__init__(config)
        self.dim = config.hidden_size
        self.amplitude = 1.0 if config.scale_embeddings else config.initializer_range
        self.table = nn.Buffer(self.waves(torch.arange(config.max_position_embeddings)), persistent=False)

    @classmethod
    def config_problem(cls, config):
        if config.hidden_size % 2:
            return "hidden_size", "sinusoidal positions pair a sin and a cos feature, so it must be even"
        return None

    def initialize(self, initializer_range):
        init.copy_(self.table, self.waves(torch.arange(self.table.shape[0], device=self.table.device)))

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

    name = "learned"
    description = "one trained vector per position, added to the token embeddings; bounded in length"
    citation = "Devlin et al. 2019, BERT; Radford et al. 2019, GPT-2"

    def __init__(self, config):
        super().__init__(config)
        self.weight = nn.Parameter(torch.empty(config.max_position_embeddings, config.hidden_size))

    @classmethod
    def max_length(cls, config):
        return config.max_position_embeddings

    def initialize(self, initializer_range):
        init.normal_(self.weight, mean=0.0, std=initializer_range)

    def panel(self, length=64):
        return super().panel(min(length, self.weight.shape[0]))  # there is nothing to draw past the last vector

    def embed(self, position_ids):
        if not torch.compiler.is_compiling():
            smallest, largest = position_range(position_ids)
            if smallest < 0:
                raise ValueError(f"position_ids contains {smallest}: positions count from 0, the first token's.")
            if largest >= self.weight.shape[0]:
                others = ", ".join(unbounded_schemes())
                raise ValueError(
                    f"position {largest} is past max_position_embeddings={self.weight.shape[0]}: learned "
                    f"positions have one trained vector per position and none beyond. Use inputs of at most "
                    f"{self.weight.shape[0]} tokens (e.g. truncate, or evaluate in windows), or a scheme that "
                    f"runs at any length ({others})."
                )
        return F.embedding(position_ids, self.weight)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Turn each feature pair (x1, x2), taken from the two halves of the head, by 90 degrees: (-x2, x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotation(query: torch.Tensor, key: torch.Tensor, rotation: Rotation) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform queries and keys `[batch, heads, seq, head_dim]` by their positions' tables.

    After a rotation, the dot product of a query at position m with a key at position n depends on m - n only:
    the score sees relative position, and nothing is added to the embeddings.
    """
    query_cos, query_sin, key_cos, key_sin = (table.unsqueeze(1) for table in rotation)
    return query * query_cos + rotate_half(query) * query_sin, key * key_cos + rotate_half(key) * key_sin


def angles(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """`position * inv_freq` for each feature pair, repeated for the two halves of the head, in float32 whatever
    the model's dtype: angles of far positions lose their phase in half precision."""
    with torch.autocast(device_type=position_ids.device.type, enabled=False):
        turns = position_ids[..., None].float() * inv_freq.float()
        return torch.cat((turns, turns), dim=-1)


class RotaryEmbedding(nn.Module):
    """The rotary tables, in the shape of transformers' own rotary classes (`LlamaRotaryEmbedding`): built from a
    config, called as `(x, position_ids) -> (cos, sin)`, each `[batch, seq, head_dim]` in the dtype of `x` (float32
    for integer `x`: the model casts them where they meet queries and keys). transformers' tests and its
    `_init_weights` know a class of this name and shape; `dynamic_rope_update` recomputes the frequencies of the
    variants that depend on the input's length ("dynamic", "longrope")."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        init_fn = self.compute_default_rope_parameters if self.rope_type == "default" else \
            ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config, device=None, **kwargs) -> tuple[torch.Tensor, float]:
        """RoFormer's frequencies, `theta^(-2j / head_dim)` for pair j, computed in float64 (exact in float32)."""
        exponent = torch.arange(0, config.head_dim, 2, dtype=torch.float64, device=device) / config.head_dim
        return (1.0 / config.rope_parameters["rope_theta"] ** exponent).to(torch.float32), 1.0

    @dynamic_rope_update
    def forward(self, x, position_ids):
        turns = angles(position_ids, self.inv_freq)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return (turns.cos() * self.attention_scaling).to(dtype), (turns.sin() * self.attention_scaling).to(dtype)


class RotaryPositions(PositionScheme):
    """Rotary position embedding (Su et al. 2021, RoFormer; used by Llama): queries and keys are rotated.

    Feature pair j of every head turns by `position * rope_theta^(-2j / head_dim)` radians: fast turns for the
    first pairs, slow ones for the last, the same spectrum as the sinusoidal table. `config.rope_parameters` picks
    a variant as in transformers' own models (`rope_type` default, linear, dynamic, yarn, longrope, llama3), whose
    frequencies come from transformers' `ROPE_INIT_FUNCTIONS`. The tables come from `rotary_emb`, a
    `RotaryEmbedding`.
    """

    name = "rotary"
    description = "queries and keys rotated by angles proportional to the position"
    config_fields = {"rope_parameters": None}  # None: transformers' default, {"rope_type": "default", "rope_theta": 1e4}
    citation = "Su et al. 2021, RoFormer: Enhanced Transformer with Rotary Position Embedding"

    def __init__(self, config):
        super().__init__(config)
        self.config = config
        self.rotary_emb = RotaryEmbedding(config)

    @classmethod
    def config_problem(cls, config):
        if config.head_dim % 2:
            return "hidden_size", (f"rotary positions rotate pairs of features, so the head size hidden_size / "
                                   f"num_attention_heads = {config.head_dim} must be even")
        rope_types = ("default", *ROPE_INIT_FUNCTIONS)
        if config.rope_parameters.get("rope_type") not in rope_types:
            return "rope_parameters", f"its rope_type must be one of {', '.join(map(repr, rope_types))}"
        theta = config.rope_parameters.get("rope_theta")
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta < math.inf:
            return "rope_parameters", "its rope_theta (the base of the frequencies) must be a positive, finite number"
        return None

    @property
    def head_dim(self) -> int:
        return self.config.head_dim

    @property
    def rope_theta(self) -> float:
        return self.config.rope_parameters["rope_theta"]

    @property
    def inv_freq(self) -> torch.Tensor:
        return self.rotary_emb.inv_freq

    @property
    def attention_scaling(self) -> float:
        return self.rotary_emb.attention_scaling

    def rotation(self, position_ids):
        cos, sin = self.rotary_emb(position_ids, position_ids)
        return Rotation(cos, sin, cos, sin)


class XPosPositions(RotaryPositions):
    """xPos (Sun et al. 2023, "A Length-Extrapolatable Transformer"): rotary, with queries scaled up and keys scaled
    down exponentially in their position, so that a score decays with distance:

        q_m -> R(m) q_m · ζ^(m/γ),   k_n -> R(n) k_n · ζ^(-n/γ),   so   q_m·k_n ∝ ζ^((m-n)/γ) · (rotary score)

    with ζ_j = (2j/d + 0.4) / 1.4 per feature pair j (d the head size; ζ < 1, the slowest-turning pairs decay least)
    and γ = `scale_base` = 512. The rotation R is rotary's, `rope_parameters` included. The scales are functions of
    the absolute position, so cached keys keep theirs, and they leave a dtype's range at some length: the key scale
    of pair 0, (1.4 / 0.4)^(n/γ), passes float16's largest number at n ≈ 4 530, float32's at n ≈ 36 260, and a key
    multiplied by it overflows earlier. `numeric_max_length` states the limit the model enforces
    (scripts/xpos_range.py measures where logits go wrong: float16 past 3 808, float32 past 35 552).
    """

    name = "xpos"
    description = "rotary with an exponential decay of the score with distance"
    citation = "Sun et al. 2023, A Length-Extrapolatable Transformer"
    scale_base = 512
    # The largest key value (in magnitude) that `numeric_max_length` leaves room for: the scaled key must stay finite.
    key_headroom = 2.0**8

    def __init__(self, config):
        super().__init__(config)
        self.zeta = nn.Buffer(self.decays(), persistent=False)

    def decays(self, device=None) -> torch.Tensor:
        two_j = torch.arange(0, self.config.head_dim, 2, dtype=torch.float32, device=device)
        return (two_j / self.config.head_dim + 0.4) / 1.4

    @classmethod
    def numeric_max_length(cls, config, dtype):
        # The key at position n is scaled by ζ^(-n/γ), largest for the smallest ζ (pair 0: 0.4 / 1.4); the scales
        # are computed in float32, so no dtype holds more than float32 does. The limit is the n at which that scale,
        # times a key of magnitude `key_headroom`, reaches the dtype's largest number.
        largest = min(torch.finfo(dtype).max, torch.finfo(torch.float32).max) / cls.key_headroom
        return math.floor(cls.scale_base * math.log(largest) / math.log(1.4 / 0.4))

    def initialize(self, initializer_range):
        init.copy_(self.zeta, self.decays(self.zeta.device))

    def rotation(self, position_ids):
        cos, sin = self.rotary_emb(position_ids, position_ids)
        with torch.autocast(device_type=position_ids.device.type, enabled=False):
            scale = self.zeta.float() ** (position_ids[..., None].float() / self.scale_base)
            scale = torch.cat((scale, scale), dim=-1)
        return Rotation(cos * scale, sin * scale, cos / scale, sin / scale)


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

    name = "alibi"
    description = "a per-head penalty linear in the query-key distance, added to the scores"
    citation = "Press et al. 2022, Train Short, Test Long: Attention with Linear Biases Enables Input Length " \
               "Extrapolation"

    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.slopes = nn.Buffer(alibi_slopes(config.num_attention_heads), persistent=False)

    def initialize(self, initializer_range):
        init.copy_(self.slopes, alibi_slopes(self.slopes.shape[0]).to(self.slopes.device))

    def attention_bias(self, distance, query_positions):
        return -self.slopes[:, None, None] * distance[:, None].to(self.slopes.dtype)


def t5_buckets(distance: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's causal buckets of `distance` (tokens back; later keys, masked anyway, fall in bucket 0): one bucket per
    distance below num_buckets / 2, then log-spaced buckets up to `max_distance`, beyond which all share the last.
    transformers' own function (T5Attention._relative_position_bucket, unidirectional), which takes key - query.
    T5's modeling file is imported here, when a t5 model first runs, not with every model."""
    from transformers.models.t5.modeling_t5 import T5Attention

    return T5Attention._relative_position_bucket(-distance, bidirectional=False, num_buckets=num_buckets,
                                                 max_distance=max_distance)


class T5Bias(PositionScheme):
    """T5's relative position bias (Raffel et al. 2020): the distance m - n from query m back to key n falls in a
    bucket (exact for small distances, log-spaced up to `relative_attention_max_distance`), and each head learns one
    scalar per bucket, added to the score:

        score(m, n) += b[head, bucket(m - n)]

    One table serves every layer, as in T5 (which computes it in the first layer and hands it on).
    """

    name = "t5"
    description = "one learned score bias per head and log-spaced bucket of the distance"
    config_fields = {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128}
    citation = "Raffel et al. 2020, Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer"

    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.bias = nn.Parameter(torch.empty(self.num_buckets, config.num_attention_heads))

    @classmethod
    def config_problem(cls, config):
        for name in cls.config_fields:
            value = getattr(config, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                return name, "expected a positive integer"
        if config.relative_attention_num_buckets < 2:
            return "relative_attention_num_buckets", "T5 buckets need at least 2 (half exact, half log-spaced)"
        if config.relative_attention_max_distance <= config.relative_attention_num_buckets // 2:
            return "relative_attention_max_distance", (
                f"the log-spaced buckets start at relative_attention_num_buckets / 2 = "
                f"{config.relative_attention_num_buckets // 2}, so it must be larger")
        return None

    def initialize(self, initializer_range):
        init.normal_(self.bias, mean=0.0, std=initializer_range)

    def attention_bias(self, distance, query_positions):
        buckets = t5_buckets(distance, self.num_buckets, self.max_distance)
        return F.embedding(buckets, self.bias).permute(0, 3, 1, 2)


class KerpleLogBias(PositionScheme):
    """KERPLE, logarithmic variant (Chi et al. 2022): a learned, conditionally positive definite kernel of the
    distance, added to the scores:

        score(m, n) += -r1 · log(1 + r2 · |m - n|),   r1, r2 > 0 learned per head

    r1 and r2 are kept positive as softplus(raw parameter), smooth everywhere (a clamp would stop the gradient of a
    parameter that crossed zero). One pair per head serves every layer: the bias is then computed once per forward
    and handed to every layer, as ALiBi's is; per-layer kernels would cost a T x T bias per layer for 2 numbers.
    """

    name = "kerple"
    description = "a learned logarithmic penalty of the distance, per head"
    citation = "Chi et al. 2022, KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation"

    bias_from_distance_alone = True

    def __init__(self, config):
        super().__init__(config)
        self.raw_r1 = nn.Parameter(torch.empty(config.num_attention_heads))
        self.raw_r2 = nn.Parameter(torch.empty(config.num_attention_heads))

    def initialize(self, initializer_range):
        # r1 = 1 for every head; r2 spread as ALiBi's slopes, so that heads start at different ranges.
        heads = self.raw_r1.shape[0]
        init.copy_(self.raw_r1, inverse_softplus(torch.ones(heads)).to(self.raw_r1.device))
        init.copy_(self.raw_r2, inverse_softplus(alibi_slopes(heads)).to(self.raw_r2.device))

    def attention_bias(self, distance, query_positions):
        r1, r2 = F.softplus(self.raw_r1.float()), F.softplus(self.raw_r2.float())
        gap = distance[:, None].abs().float()
        return -r1[:, None, None] * torch.log1p(r2[:, None, None] * gap)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """The x with softplus(x) = y, for y > 0."""
    return y + torch.log(-torch.expm1(-y))


class FireBias(PositionScheme):
    """FIRE, Functional Interpolation for Relative Positions (Li et al. 2024): a small MLP of the distance,
    normalised by the query's position so that long inputs map into the range seen in training:

        score(m, n) += f(ψ(m - n) / ψ(max(L, m))),   ψ(x) = log(c·x + 1)

    f: 1 -> 32 -> heads (ReLU), c > 0 and the threshold L > 0 learned (kept positive by softplus; L starts at
    max_position_embeddings / 2, c at 1). One MLP serves every layer: the bias is computed once per forward
    and handed to every layer, as ALiBi's is, instead of one MLP over a T x T grid per layer.

    The bias depends on the query's position, not on the distance alone: a table of it would be T x T again, so under
    flex_attention too it goes in as the `[batch, heads, queries, keys]` tensor.
    """

    name = "fire"
    description = "a learned MLP of the distance normalised by the query position"
    citation = "Li et al. 2024, Functional Interpolation for Relative Positions Improves Long Context Transformers"
    hidden = 32

    def __init__(self, config):
        super().__init__(config)
        self.start_threshold = config.max_position_embeddings / 2
        self.mlp_in = nn.Linear(1, self.hidden)
        self.mlp_out = nn.Linear(self.hidden, config.num_attention_heads)
        self.raw_c = nn.Parameter(torch.empty(()))
        self.raw_threshold = nn.Parameter(torch.empty(()))

    def initialize(self, initializer_range):
        init.copy_(self.raw_c, inverse_softplus(torch.tensor(1.0)).to(self.raw_c.device))
        init.copy_(self.raw_threshold, inverse_softplus(torch.tensor(self.start_threshold)).to(self.raw_c.device))

    def attention_bias(self, distance, query_positions):
        c, threshold = F.softplus(self.raw_c.float()), F.softplus(self.raw_threshold.float())

        def psi(x):
            return torch.log1p(c * x)

        # [batch, 1, queries, keys]: the normaliser depends on each row's query positions.
        normalised = psi(distance.clamp(min=0).float()) / psi(torch.maximum(threshold, query_positions.float()))[..., None]
        with torch.autocast(device_type=distance.device.type, enabled=False):
            hidden = F.relu(F.linear(normalised[..., None], self.mlp_in.weight.float(), self.mlp_in.bias.float()))
            bias = F.linear(hidden, self.mlp_out.weight.float(), self.mlp_out.bias.float())
        return bias.permute(0, 3, 1, 2)


# The schemes that come with the model, in the order the tools list them.
for _scheme in (SinusoidalPositions, LearnedPositions, RotaryPositions, AlibiBias, NoPositions, T5Bias, KerpleLogBias,
                FireBias, XPosPositions):
    register_scheme(_scheme)
