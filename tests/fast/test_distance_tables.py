"""Distance tables of the score biases: which schemes can be read from a [heads, keys] table (a bias of the distance
alone: alibi, t5, kerple, a scheme registered here) and which keep the tensor (FIRE, which also reads the query's
position), and that every table entry the flex_attention kernel can read (`DistanceBias`, its lookup and its
score_mod) equals the bias tensor, for prefill and decode steps and positions that skip. No kernel is compiled: the
runs under flex_attention are in tests/e2e/test_flex_bias.py."""

import pytest
import torch
from conftest import TABLE_SCHEMES, TENSOR_SCHEMES, SharedSquareRootBias, tiny_lm

# A scheme defined outside the package, registered for each test here: its bias is one for every head.
pytestmark = pytest.mark.usefixtures("sqrt_registered")

from hf_posattn.model.positional import DistanceBias


def test_schemes_of_the_distance_alone_are_read_from_a_table():
    assert {"alibi", "t5", "kerple"} <= set(TABLE_SCHEMES) and "fire" in TENSOR_SCHEMES
    for name in TENSOR_SCHEMES:
        assert tiny_lm(name).model.positions.distance_table(8) is None
    for name in ("none", "rotary", "sinusoidal"):  # no bias: no table either
        assert tiny_lm(name).model.positions.distance_table(8) is None


@torch.no_grad()
@pytest.mark.parametrize("scheme", [*TABLE_SCHEMES, SharedSquareRootBias.name])
@pytest.mark.parametrize("query_length, past_length", [(1, 0), (7, 0), (1, 12), (5, 30)])
@pytest.mark.parametrize("stride", [1, 3])
def test_table_entries_equal_the_bias_tensor(scheme, query_length, past_length, stride):
    """Every entry the kernel can read equals the tensor's, for prefill and for decoding steps after a cache, and
    whatever the rows' positions (left padding shifts them; randomized positions skip some: stride 3)."""
    positions = tiny_lm(scheme).model.positions
    key_length = past_length + query_length
    key_positions = (torch.arange(key_length) * stride)[None] + torch.tensor([[0], [3]])
    query_positions = key_positions[:, past_length:]
    distance = query_positions[:, :, None] - key_positions[:, None, :]
    expected = positions.attention_bias(distance, query_positions).expand(2, 4, -1, -1)
    table = positions.distance_table(int(key_positions.max()) + 1).expand(4, -1)
    looked_up = None if stride == 1 else (query_positions, key_positions)  # positions that never skip: slots
    bias = DistanceBias(table, torch.tensor(past_length), looked_up)
    batch, head, query, key = torch.meshgrid(*(torch.arange(n) for n in expected.shape), indexing="ij")
    seen = (distance >= 0)[:, None].expand_as(expected)  # later keys are masked: any value will do there
    torch.testing.assert_close(bias[batch, head, query, key][seen], expected[seen], rtol=0, atol=0)
    scores = torch.randn(expected.shape)
    torch.testing.assert_close(bias.score_mod(scores, batch, head, query, key)[seen], (scores + expected)[seen])
