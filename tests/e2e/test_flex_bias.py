"""Score biases under flex_attention: a bias of the distance alone is read from a [heads, keys] table inside the
kernel (no [batch, heads, T, T] tensor), and gives what sdpa gives with the full tensor: outputs, losses and the
gradients of the bias parameters. A bias that also depends on the query's position (FIRE) keeps the tensor."""

import pytest
import torch
import torch.nn.attention.flex_attention as torch_flex
import transformers.integrations.flex_attention as transformers_flex
from conftest import BIAS_SCHEMES, TABLE_SCHEMES, TENSOR_SCHEMES, SharedSquareRootBias, random_ids, tiny_config, tiny_lm

# A scheme defined outside the package, registered for each test here: its bias is one for every head.
pytestmark = pytest.mark.usefixtures("sqrt_registered")

from hf_posattn.model.positional import POSITION_SCHEMES

LENGTHS = [9, 140]  # within one of flex's 128-token blocks, and across two


def _left_padded_batch(length):
    """Two rows, the second left-padded by 4. Labels are -100 where the token before is padding: the logits at a
    padded position (which predict the next label) are not the model's to match."""
    ids = random_ids(2, length, seed=length)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    labels = ids.clone()
    labels[:, 1:][mask[:, :-1] == 0] = -100
    return ids, mask, labels


@torch.no_grad()
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("scheme", [*BIAS_SCHEMES, SharedSquareRootBias.name])
def test_flex_prefill_equals_sdpa(scheme, length):
    if scheme in TENSOR_SCHEMES:
        # torch 2.13's CPU flex kernel fails to compile (CppCompileError) when it recompiles for a new length with a
        # [batch, heads, T, T] bias (dynamic shapes): each length starts from a fresh compile here.
        torch._dynamo.reset()
    ids, mask, labels = _left_padded_batch(length)
    sdpa = tiny_lm(scheme, "sdpa")(ids, attention_mask=mask, labels=labels)
    flex = tiny_lm(scheme, "flex_attention")(ids, attention_mask=mask, labels=labels)
    real = mask.bool()
    torch.testing.assert_close(flex.logits[real], sdpa.logits[real], rtol=0, atol=1e-5)
    torch.testing.assert_close(flex.loss, sdpa.loss, rtol=0, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("scheme", [*BIAS_SCHEMES, SharedSquareRootBias.name])
def test_flex_reads_positions_that_skip(scheme):
    """Randomized positions (every third here): the kernel looks each query's and key's position up, and gives what
    sdpa gives with the whole bias."""
    torch._dynamo.reset()  # a fresh compile: torch 2.13's CPU kernel fails to recompile for a new shape
    ids = random_ids(2, 20)
    skipping = (torch.arange(20) * 3)[None]
    sdpa = tiny_lm(scheme, "sdpa")(ids, position_ids=skipping).logits
    flex = tiny_lm(scheme, "flex_attention")(ids, position_ids=skipping).logits
    torch.testing.assert_close(flex, sdpa, rtol=0, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("scheme", [*TABLE_SCHEMES, SharedSquareRootBias.name])
def test_flex_makes_no_query_by_key_bias(scheme):
    """Under flex the scheme is asked for one query row of bias (the table), never for queries x keys; under sdpa for
    the whole grid, which is what the table saves."""
    asked = {}
    for attn in ("flex_attention", "sdpa"):
        model = tiny_lm(scheme, attn)
        positions = model.model.positions
        answer = positions.attention_bias
        asked[attn] = []
        positions.attention_bias = lambda distance, query_positions: asked[attn].append(distance.shape) or answer(
            distance, query_positions)
        ids, mask, _ = _left_padded_batch(LENGTHS[0])
        model(ids, attention_mask=mask)
    assert asked["flex_attention"] == [(1, 1, LENGTHS[0])]
    assert asked["sdpa"] == [(2, LENGTHS[0], LENGTHS[0])]  # one grid per row: left padding gives rows their positions


def _bias_gradients(scheme, attn, ids, mask, labels, device="cpu"):
    model = tiny_lm(scheme, attn).to(device).train()
    out = model(ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    out.loss.backward()
    gradients = {name: parameter.grad.cpu() for name, parameter in model.model.positions.named_parameters()}
    assert gradients and all(gradient.abs().sum() > 0 for gradient in gradients.values()), gradients
    return out.loss.detach().cpu(), gradients


# The schemes whose bias has parameters to train.
LEARNED_BIAS_SCHEMES = [name for name in BIAS_SCHEMES if list(POSITION_SCHEMES[name](tiny_config(name)).parameters())]
LEARNED_BIAS_SCHEMES.append(SharedSquareRootBias.name)


@pytest.fixture
def flex_reference_kernel(monkeypatch):
    """flex_attention's reference implementation with its backward, on CPU: torch 2.13 runs no flex backward on
    CPU (`_validate_device` refuses), and its compiled kernels run on a GPU only. The uncompiled flex_attention is
    torch's own definition of what the kernels compute, autograd included (it computes gradients for the tensors a
    score_mod captures: the bias table); transformers' flex_attention_forward, which reads the bias, runs unchanged."""
    monkeypatch.setattr(torch_flex, "_validate_device", lambda *tensors: None)
    monkeypatch.setattr(transformers_flex, "compile_friendly_flex_attention",
                        lambda query, key, value, training=False, **kwargs: torch_flex.flex_attention(
                            query, key, value, **kwargs))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("length", [9, 33])
@pytest.mark.parametrize("scheme", LEARNED_BIAS_SCHEMES)
def test_bias_gradients_through_flex_equal_sdpa(scheme, length, flex_reference_kernel):
    ids, mask, labels = _left_padded_batch(length)
    sdpa_loss, sdpa_gradients = _bias_gradients(scheme, "sdpa", ids, mask, labels)
    flex_loss, flex_gradients = _bias_gradients(scheme, "flex_attention", ids, mask, labels)
    torch.testing.assert_close(flex_loss, sdpa_loss, rtol=0, atol=1e-5)
    for name, gradient in sdpa_gradients.items():
        torch.testing.assert_close(flex_gradients[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex_attention's compiled backward runs on a GPU only")
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("scheme", LEARNED_BIAS_SCHEMES)
def test_bias_gradients_through_the_flex_kernel_equal_sdpa_on_a_gpu(scheme, length):
    ids, mask, labels = _left_padded_batch(length)
    sdpa_loss, sdpa_gradients = _bias_gradients(scheme, "sdpa", ids, mask, labels, "cuda")
    flex_loss, flex_gradients = _bias_gradients(scheme, "flex_attention", ids, mask, labels, "cuda")
    torch.testing.assert_close(flex_loss, sdpa_loss, rtol=0, atol=1e-4)
    for name, gradient in sdpa_gradients.items():
        torch.testing.assert_close(flex_gradients[name], gradient, rtol=1e-3, atol=1e-5, msg=name)
