"""Experiment 2: POS tagging with a unidirectional vs a bidirectional LSTM (UD English EWT).

* The QUICK setting trains end to end on a subset of the real treebank and beats the
  majority-tag baseline by a wide margin; the best-dev checkpoint it writes reloads to the
  same test accuracy (skipped when the data is neither mirrored nor cached).
* Directionality: the bidirectional tagger's output at position t changes when a *later* word
  changes; the unidirectional one's does not (but does change when an earlier word changes).
* Padding: a sentence's outputs do not depend on what it is batched with, nor on whatever
  sits in the padded positions; the loss (and its gradients) over a padded batch is exactly
  the token-weighted mean over the sentences taken alone; accuracy counts real tokens only.
* The pieces: vocabularies, featurizer, length buckets, word dropout, parameter budgets.
"""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

import minibidir as mb
from minibidir import data
from minibidir.experiments import pos_tagging as P

HAVE_EWT = all(data.available("ud_english_ewt", s) for s in ("train", "dev", "test"))
needs_ewt = pytest.mark.skipif(not HAVE_EWT, reason="UD English EWT is neither mirrored nor cached")

# ----------------------------------------------------------------------------- a tiny synthetic corpus

TRAIN = [
    SimpleNamespace(words=["The", "dog", "saw", "a", "cat", "."],
                    upos=["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"]),
    SimpleNamespace(words=["I", "saw", "her", "duck", "yesterday"],
                    upos=["PRON", "VERB", "PRON", "NOUN", "ADV"]),
    SimpleNamespace(words=["Cats", "run", "."], upos=["NOUN", "VERB", "PUNCT"]),
    SimpleNamespace(words=["the", "saw", "is", "sharp", "and", "new", "!"],
                    upos=["DET", "NOUN", "AUX", "ADJ", "CCONJ", "ADJ", "PUNCT"]),
]


def _setup(lowercase=False, max_word_len=20):
    wv, cv = P.build_vocabs(TRAIN, lowercase=lowercase)
    feat = P.Featurizer(wv, cv, lowercase=lowercase, max_word_len=max_word_len,
                        known_forms={w for s in TRAIN for w in s.words})
    return wv, cv, feat


def _tagger(wv, cv, bidirectional, use_chars, num_layers=1, dropout=0.0):
    return P.Tagger(wv, cv, len(P.TAGS), word_dim=8, char_dim=5, char_hidden=4, hidden=6,
                    num_layers=num_layers, bidirectional=bidirectional, use_chars=use_chars,
                    dropout=dropout)


@pytest.fixture
def float64():
    mb.set_default_dtype(np.float64)          # the conftest fixture restores the default
    yield


# ----------------------------------------------------------------------------- vocabularies and batches

def test_vocab_specials_frequency_order_and_unknowns():
    wv, cv = P.build_vocabs(TRAIN)
    assert wv.itos[:2] == [P.PAD, P.UNK] and (P.PAD_ID, P.UNK_ID) == (0, 1)
    assert wv.itos[2:4] == ["saw", "."] and list(wv.counts[:4]) == [0, 0, 3, 2]
    assert wv["saw"] != P.UNK_ID and wv["zebra"] == P.UNK_ID
    assert wv["the"] != wv["The"]
    lower, _ = P.build_vocabs(TRAIN, lowercase=True)
    assert "The" not in lower and lower.counts[lower["the"]] == 2
    assert len(lower) == len(wv) - 1                     # "The" and "the" merge
    frequent, _ = P.build_vocabs(TRAIN, min_freq=2)
    assert set(frequent.itos[2:]) == {".", "saw"}
    assert cv["a"] != P.UNK_ID and cv["é"] == P.UNK_ID
    np.testing.assert_array_equal(wv.encode(["saw", "zebra"]), [wv["saw"], P.UNK_ID])


def test_featurizer_batch_layout():
    wv, cv, feat = _setup(lowercase=True, max_word_len=6)
    sents = [TRAIN[0], SimpleNamespace(words=["Extraordinarily", "the"], upos=["ADV", "DET"]),
             TRAIN[2]]
    b = feat.batch(feat.encode_all(sents))
    np.testing.assert_array_equal(b.lengths, [6, 2, 3])
    assert b.words.shape == b.tags.shape == b.form_index.shape == b.mask.shape == (3, 6)
    np.testing.assert_array_equal(b.mask, np.arange(6)[None] < b.lengths[:, None])
    assert (b.words[~b.mask] == P.PAD_ID).all() and (b.tags[~b.mask] == P.IGNORE_INDEX).all()
    assert (b.tags[b.mask] >= 0).all() and b.num_tokens == 11
    assert b.words[0, 0] == b.words[1, 1] == wv["the"]            # lower-cased word ids ...
    # ... but the character side keeps each distinct spelling once, capitals included
    forms = [w for s in sents for w in s.words]
    assert b.chars.shape[0] == len(set(forms)) == len(b.char_lengths)
    decode = lambda u: "".join(cv.itos[c] for c in b.chars[u, :b.char_lengths[u]])
    for i, s in enumerate(sents):
        for t, w in enumerate(s.words):
            want = w if len(w) <= 6 else w[:3] + w[-3:]            # long words: prefix + suffix
            assert decode(b.form_index[i, t]) == "".join(cv.itos[cv[c]] for c in want)
    assert (b.chars[np.arange(b.chars.shape[1])[None] >= b.char_lengths[:, None]] == P.PAD_ID).all()
    np.testing.assert_array_equal(b.oov[1, :2], [True, False])
    assert P.TAGS[b.tags[1, 0]] == "ADV"
    with pytest.raises(ValueError, match="unknown UPOS tag"):
        feat.encode(SimpleNamespace(words=["x"], upos=["NOPE"]))


def test_length_batches_cover_everything_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(1, 60, size=203)
    for rng in (None, np.random.default_rng(1)):
        batches = P.length_batches(lengths, 16, rng)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(203))
        assert all(len(b) <= 16 for b in batches) and sum(len(b) == 16 for b in batches) == 12
        spread = [lengths[b].max() - lengths[b].min() for b in batches]
        assert max(spread) <= 8                       # sorted by length: neighbours are similar
    a = P.length_batches(lengths, 16, np.random.default_rng(1))
    c = P.length_batches(lengths, 16, np.random.default_rng(2))
    assert [x.tolist() for x in a] != [x.tolist() for x in c]      # reshuffled per epoch


def test_word_dropout_spares_specials_and_drops_rare_words_more():
    counts = np.array([0, 0, 1, 1000])
    words = np.array([[0, 1, 2, 3]] * 20000)
    rng = np.random.default_rng(0)
    out = P.word_dropout(words, counts, 0.25, rng)
    assert (out[:, :2] == words[:, :2]).all()
    assert set(np.unique(out[:, 2])) <= {1, 2} and set(np.unique(out[:, 3])) <= {1, 3}
    rate = (out == P.UNK_ID).mean(axis=0)
    assert abs(rate[2] - 0.25 / 1.25) < 0.01 and rate[3] < 0.001
    assert P.word_dropout(words, counts, 0.0, rng) is words


def test_parameter_budgets():
    for args in [(130, 128, 1, True), (100, 96, 2, False), (200, 17, 3, True)]:
        lstm = mb.nn.LSTM(*args[:2], num_layers=args[2], bidirectional=args[3])
        assert P.lstm_param_count(*args) == sum(p.data.size for p in lstm.parameters())
    h = P.matched_hidden(200, 128)
    uni, bi = P.lstm_param_count(200, h), P.lstm_param_count(200, 128, 1, True)
    assert h > 128 and abs(uni - bi) / bi < 0.01
    assert abs(P.lstm_param_count(200, h + 1) - bi) > abs(uni - bi)
    wv, cv, _ = _setup()
    parts = P.count_parameters(_tagger(wv, cv, True, True))
    assert parts["lstm"] == P.lstm_param_count(8 + 8, 6, 1, True)
    assert parts["word_embedding"] == len(wv) * 8 and parts["head"] == 12 * 17 + 17
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


# ----------------------------------------------------------------------------- directionality

@pytest.mark.parametrize("use_chars", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_output_depends_on_later_words_unidirectional_does_not(float64, use_chars,
                                                                             num_layers):
    wv, cv, feat = _setup()
    words = ["The", "dog", "saw", "a", "cat", "."]
    changed = list(words)
    changed[4] = "duck"                               # a later word (position 4) differs
    earlier = list(words)
    earlier[1] = "Cats"                               # an earlier word (position 1) differs
    for bidirectional in (False, True):
        model = _tagger(wv, cv, bidirectional, use_chars, num_layers).eval()
        out = {}
        for name, ws in (("orig", words), ("later", changed), ("earlier", earlier)):
            out[name] = model(feat.batch([feat.encode(ws)])).data[0]
        before_4 = np.abs(out["later"][:4] - out["orig"][:4]).max(axis=-1)   # per position 0..3
        if bidirectional:
            assert (before_4 > 1e-6).all(), before_4      # every earlier position sees the change
        else:
            assert before_4.max() < 1e-12, before_4       # none does
        # sanity (the test can fail): an *earlier* change reaches the later positions in both
        after_1 = np.abs(out["earlier"][2:] - out["orig"][2:]).max(axis=-1)
        assert (after_1 > 1e-6).all()
        first = np.abs(out["earlier"][0] - out["orig"][0]).max()
        assert (first > 1e-6) if bidirectional else (first < 1e-12)


# ----------------------------------------------------------------------------- padding and lengths

def _batches(feat):
    enc = feat.encode_all(TRAIN)
    return enc, feat.batch(enc)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_chars", [False, True])
def test_padding_never_changes_outputs_or_loss(float64, bidirectional, use_chars):
    wv, cv, feat = _setup()
    enc, batch = _batches(feat)
    model = _tagger(wv, cv, bidirectional, use_chars)         # dropout 0: train mode is exact
    logits = model(batch)
    loss = P.tagging_loss(logits, batch.tags)
    loss.backward()
    grads = {k: p.grad.data.copy() for k, p in model.named_parameters()}
    n_total = batch.num_tokens

    # each sentence alone (no padding at all): the same outputs, and the batch loss is the
    # token-weighted mean of the per-sentence losses, gradients likewise
    want_loss = 0.0
    want_grads = {k: np.zeros_like(g) for k, g in grads.items()}
    for i, e in enumerate(enc):
        model.zero_grad()
        alone = feat.batch([e])
        out = model(alone)
        np.testing.assert_allclose(out.data[0], logits.data[i, :len(e)], rtol=1e-10, atol=1e-12)
        l_i = P.tagging_loss(out, alone.tags)
        l_i.backward()
        w = len(e) / n_total
        want_loss += w * l_i.item()
        for k, p in model.named_parameters():
            want_grads[k] += w * p.grad.data
    assert math.isclose(loss.item(), want_loss, rel_tol=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(g, want_grads[k], rtol=1e-9, atol=1e-12, err_msg=k)

    # junk in the padded positions changes nothing at the real ones
    junk = P.Batch(**{k: getattr(batch, k).copy() for k in batch.__dataclass_fields__})
    pad = ~batch.mask
    rng = np.random.default_rng(0)
    junk.words[pad] = rng.integers(2, len(wv), pad.sum())
    junk.form_index[pad] = rng.integers(0, len(batch.char_lengths), pad.sum())
    model.zero_grad()
    out = model(junk)
    np.testing.assert_allclose(out.data[batch.mask], logits.data[batch.mask], rtol=1e-12, atol=1e-14)
    assert math.isclose(P.tagging_loss(out, junk.tags).item(), loss.item(), rel_tol=1e-12)


def test_accuracy_counts_real_tokens_only():
    tags = np.array([[3, 5, P.IGNORE_INDEX], [7, P.IGNORE_INDEX, P.IGNORE_INDEX]])
    logits = np.zeros((2, 3, 17))
    logits[0, 0, 3] = logits[0, 1, 4] = logits[1, 0, 7] = 1.0      # 2 of 3 real tokens right
    logits[0, 2, 0] = logits[1, 1, 0] = logits[1, 2, 0] = 1.0       # padding: argmax 0
    assert P.count_correct(logits, tags) == (2, 3)
    assert P.count_correct(mb.tensor(logits), tags, np.array([[True, True, True], [False] * 3])) == (1, 2)
    wv, cv, feat = _setup()
    _, batch = _batches(feat)
    res = P.evaluate(_tagger(wv, cv, True, True), [batch])
    assert res["tokens"] == sum(len(s.words) for s in TRAIN)
    assert res["oov_tokens"] == 0 and math.isnan(res["oov_acc"])


def test_predict_returns_a_tag_per_word():
    wv, cv, feat = _setup()
    model = _tagger(wv, cv, True, True)
    sents = [["I", "saw", "a", "zebra"], ["Run", "!"], ["x"]]
    tags = P.predict(model, feat, sents, batch_size=2)
    assert [len(t) for t in tags] == [4, 2, 1] and all(t in P.TAGS for s in tags for t in s)
    assert model.training                                     # the mode is restored


# ----------------------------------------------------------------------------- the real experiment

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    if not HAVE_EWT:
        pytest.skip("UD English EWT is neither mirrored nor cached")
    path = tmp_path_factory.mktemp("pos") / "best.safetensors"
    mb.manual_seed(0)
    return P.run(dict(P.QUICK, checkpoint=str(path)), progress=False, return_model=True), path


@needs_ewt
def test_quick_run_beats_majority_baseline(quick):
    r, _ = quick
    train, dev, _ = P.load_splits(dict(P.QUICK))
    assert len(train) == P.QUICK["train_limit"] and len(dev) == P.QUICK["dev_limit"]
    base = P.baselines(train, dev)
    assert base["majority_tag_name"] == "NOUN" and base["majority_tag"] < 0.25
    assert r["dev_acc"] > base["majority_tag"] + 0.4, (r["dev_acc"], base)
    assert r["test_acc"] > r["baselines"]["majority_tag"] + 0.4
    assert r["epochs_run"] == 1 and len(r["history"]) == 1 and r["best_epoch"] == 1
    assert r["test_tokens"] == sum(len(s.words) for s in P.load_splits(dict(P.QUICK))[2])
    assert 0 < r["test_oov_acc"] < r["test_acc"]              # unseen words are harder
    assert r["params"]["total"] == sum(p.data.size for p in r["model"].parameters())
    json.dumps({k: v for k, v in r.items() if k not in ("model", "featurizer")})


@needs_ewt
def test_quick_run_best_checkpoint_reloads(quick):
    r, path = quick
    from minibidir import checkpoint
    state = checkpoint.load_state_dict(path)
    model = P.Tagger(r["featurizer"].word_vocab, r["featurizer"].char_vocab, len(P.TAGS),
                     **{k: r["config"][k] for k in ("word_dim", "char_dim", "char_hidden", "hidden",
                                                     "num_layers", "bidirectional", "use_chars",
                                                     "dropout")})
    model.load_state_dict(state)
    feat = r["featurizer"]
    _, _, test = P.load_splits(dict(P.QUICK))
    enc = feat.encode_all(test)
    batches = [feat.batch([enc[i] for i in idx]) for idx in P.length_batches([len(e) for e in enc], 64)]
    assert P.evaluate(model, batches)["acc"] == pytest.approx(r["test_acc"], abs=1e-12)


@needs_ewt
def test_compare_table_lists_variants_and_references(quick):
    r, _ = quick
    rows = [dict(r, variant=name) for name in ("uni-word", "bi-char")]
    table = P.format_table(rows)
    assert "| uni-word |" in table and "| bi-char |" in table
    assert "92.10" in table and "96.04" in table and "94.63" in table
    assert f"{100 * r['test_acc']:.2f}" in table
    cfg = P._variant_config(dict(P.FULL), "uni-char", True, {"uni-char": {"epochs": 3}})
    assert cfg["hidden"] == P.matched_hidden(100 + 100, 128) and cfg["epochs"] == 3
    assert not cfg["bidirectional"] and cfg["use_chars"]


@needs_ewt
def test_compare_runs_variants_at_matched_budgets():
    out = P.compare({"train_limit": 200, "dev_limit": 50, "test_limit": 50}, quick=True,
                    variants=("uni-word", "bi-word"), progress=False)
    uni, bi = out["results"]
    assert (uni["variant"], bi["variant"]) == ("uni-word", "bi-word")
    assert not uni["config"]["bidirectional"] and bi["config"]["bidirectional"]
    assert uni["config"]["hidden"] > bi["config"]["hidden"] == P.QUICK["hidden"]
    assert abs(uni["params"]["lstm"] - bi["params"]["lstm"]) / bi["params"]["lstm"] < 0.05
    assert uni["sizes"] == bi["sizes"] and uni["sizes"]["train_sentences"] == 200
    assert "| uni-word |" in out["table"] and "| bi-word |" in out["table"]


@needs_ewt
def test_time_budget_seeding_and_settings():
    small = dict(P.QUICK, train_limit=100, dev_limit=30, test_limit=30, epochs=3)
    r = P.run(dict(small, time_budget_s=1e-3), progress=False)
    assert r["epochs_run"] == 1 and r["config"]["epochs"] == 3
    again = P.run(dict(small, epochs=1), progress=False)             # seeded: the same run again
    assert again["history"][0]["loss"] == r["history"][0]["loss"]
    assert again["test_acc"] == r["test_acc"]
    with pytest.raises(ValueError, match="unknown settings"):
        P.run(dict(small, hiden=3), progress=False)


@needs_ewt
def test_interrupted_run_resumes_exactly(tmp_path):
    small = dict(P.QUICK, train_limit=100, dev_limit=30, test_limit=30, epochs=2, dropout=0.3)
    whole = P.run(small, progress=False)
    path = str(tmp_path / "state.safetensors")
    P.run(dict(small, epochs=1, state_path=path), progress=False)          # stops after epoch 1
    resumed = P.run(dict(small, state_path=path), progress=False)          # goes on from there
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert [h["dev_acc"] for h in resumed["history"]] == [h["dev_acc"] for h in whole["history"]]
    assert resumed["test_acc"] == whole["test_acc"] and resumed["epochs_run"] == 2
    with pytest.raises(ValueError, match="different configuration"):
        P.run(dict(small, state_path=path, hidden=8), progress=False)
