"""Equivalence with peers, in process: `from_gpt2` turns a GPT-2 model into an hf_posattn model that computes the
same logits, loss and generations (and refuses what it cannot express), and learned positions with segments and
LayerNorm equal BERT's embeddings given the same weights. The `convert` script is run in tests/e2e/test_peers.py."""

import pytest
import torch
from conftest import random_gpt2, random_ids, tiny_config
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEmbeddings

from hf_posattn import PosAttnForCausalLM
from hf_posattn.model.modeling_posattn import PosAttnEmbeddings
from hf_posattn.sharing.convert import from_gpt2

pytestmark = pytest.mark.usefixtures("no_grad")


def test_from_gpt2_computes_the_same_function():
    gpt2 = random_gpt2()
    model = from_gpt2(gpt2).eval()
    assert isinstance(model, PosAttnForCausalLM)
    config = model.config
    assert (config.position_embedding_type, config.type_vocab_size, config.embedding_layer_norm, config.hidden_act) \
        == ("learned", 0, False, "gelu_new")
    ids = random_ids(3, 20)
    torch.testing.assert_close(model(ids).logits, gpt2(ids).logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(model(ids, labels=ids).loss, gpt2(ids, labels=ids).loss, rtol=0, atol=1e-5)
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert model.generate(ids, **kwargs).tolist() == gpt2.generate(ids, **kwargs).tolist()
    assert model.lm_head.weight is model.model.embeddings.word_embeddings.weight


def test_from_gpt2_refuses_what_it_cannot_express():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True"):
        from_gpt2(random_gpt2(scale_attn_by_inverse_layer_idx=True))


def test_embeddings_equal_bert_embeddings():
    """Learned positions + segments + LayerNorm: the same module as BertEmbeddings, given the same weights."""
    config = tiny_config("learned", type_vocab_size=2, embedding_layer_norm=True, hidden_dropout_prob=0.0)
    bert_config = BertConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                             max_position_embeddings=config.max_position_embeddings, type_vocab_size=2,
                             layer_norm_eps=config.layer_norm_eps, hidden_dropout_prob=0.0, pad_token_id=0)
    torch.manual_seed(0)
    bert = BertEmbeddings(bert_config).eval()
    for module in (bert.LayerNorm,):
        module.weight.normal_(), module.bias.normal_()
    model = PosAttnForCausalLM(config).eval().model
    model.embeddings.word_embeddings.weight.copy_(bert.word_embeddings.weight)
    model.embeddings.token_type_embeddings.weight.copy_(bert.token_type_embeddings.weight)
    model.positions.weight.copy_(bert.position_embeddings.weight)
    model.embeddings.norm.load_state_dict(bert.LayerNorm.state_dict())

    ids = random_ids(2, 12)
    segments = (torch.arange(12) >= 5).long().expand(2, -1)
    positions = torch.arange(12).expand(2, -1)
    ours = model.embeddings(input_ids=ids, token_type_ids=segments, position_embeds=model.positions.embed(positions))
    torch.testing.assert_close(ours, bert(input_ids=ids, token_type_ids=segments, position_ids=positions),
                               rtol=0, atol=1e-6)
    # Without token_type_ids both default to segment 0.
    ours = model.embeddings(input_ids=ids, position_embeds=model.positions.embed(positions))
    torch.testing.assert_close(ours, bert(input_ids=ids, position_ids=positions), rtol=0, atol=1e-6)
    assert isinstance(model.embeddings, PosAttnEmbeddings)
