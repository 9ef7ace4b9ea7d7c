"""Experiment 3: sequence to sequence, character-level lemmatisation (UD English EWT).

* Data preparation: (form, UPOS, lemma) types with their token counts, the length cut, seeded
  subsets, the lookup table, the "unseen" pairs, the categories; the id arrays (sources with the
  tag symbol first, targets, teacher forcing, the aligned model's targets).
* Directionality: the unidirectional encoder's output at position t does not change when a
  *later* character changes (and does when an earlier one does); the bidirectional encoder's
  backward half does; the decoder is causal, so teacher forcing is what greedy decoding sees.
* Decoding: greedy LSTM decoding agrees with the teacher-forced logits on its own output; the
  batched greedy decoder of the Transformer gives the library's ``greedy`` result.
* Parameter formulas = the modules' counts; the budget plan matches the two LSTM encoders.
* Scores by hand; a run is deterministic; the quick setting on the real treebank (skipped
  when it is neither mirrored nor cached); the command line's bad options.
"""
from types import SimpleNamespace

import numpy as np
import pytest

import minibidir as mb
from minibidir import data
from minibidir.experiments import seq2seq as S

HAVE_EWT = all(data.available("ud_english_ewt", s) for s in ("train", "dev", "test"))
needs_ewt = pytest.mark.skipif(not HAVE_EWT, reason="UD English EWT is neither mirrored nor cached")


def _sent(*triples):
    words, upos, lemmas = zip(*triples)
    return SimpleNamespace(words=list(words), upos=list(upos), lemmas=list(lemmas))


TRAIN = [
    _sent(("The", "DET", "the"), ("children", "NOUN", "child"), ("went", "VERB", "go"), ("home", "ADV", "home"),
          (".", "PUNCT", ".")),
    _sent(("She", "PRON", "she"), ("studies", "VERB", "study"), ("the", "DET", "the"), ("children", "NOUN", "child"),
          ("'s", "PART", "'s"), ("books", "NOUN", "book")),
    _sent(("see", "VERB", "see"), ("http://www.example.com/a/very/long/path", "X",
                                   "http://www.example.com/a/very/long/path"), ("in", "ADP", "in")),
    _sent(("in", "ADP", "into"), ("in", "ADP", "in"), ("wo", "AUX", "will"), ("n't", "PART", "not")),
]
DEV = [_sent(("studied", "VERB", "study"), ("books", "NOUN", "book"))]
TEST = [_sent(("children", "NOUN", "child"), ("The", "DET", "the"), ("went", "VERB", "go")),
        _sent(("children", "NOUN", "child"), ("houses", "NOUN", "house"), ("went", "NOUN", "went"))]


@pytest.fixture
def float64():
    mb.set_default_dtype(np.float64)          # the conftest fixture restores the default
    yield


def _data(max_chars=12):
    return S.load_data(max_chars=max_chars, splits=(TRAIN, DEV, TEST))


# ----------------------------------------------------------------------------- data preparation

def test_types_counts_length_cut_and_lookup():
    d = _data()
    train = {(i.form, i.upos, i.lemma): i.count for i in d.train}
    assert train[("children", "NOUN", "child")] == 2 and train[("the", "DET", "the")] == 1
    assert train[("in", "ADP", "in")] == 2 and train[("in", "ADP", "into")] == 1      # both triples kept
    assert not any(len(f) > 12 for f, _, _ in train)                                    # the URL is cut ...
    assert d.excluded["train"] == {"types": 1, "tokens": 1, "all_types": 16, "all_tokens": 18}  # ... and counted
    assert sum(train.values()) == 17 and len(train) == 15
    assert d.lookup[("in", "ADP")] == "in"                      # the most frequent lemma of the pair
    assert d.lookup[("children", "NOUN")] == "child" and ("houses", "NOUN") not in d.lookup
    test = {(i.form, i.upos, i.lemma): i.count for i in d.test}
    assert test == {("children", "NOUN", "child"): 2, ("The", "DET", "the"): 1, ("went", "VERB", "go"): 1,
                    ("houses", "NOUN", "house"): 1, ("went", "NOUN", "went"): 1}
    assert d.sizes["test_unseen_types"] == 2                    # houses/NOUN and went/NOUN (a new pair)
    assert d.sizes["test_tokens"] == 6


def test_subsets_are_seeded_and_limited():
    a = S.load_data(max_chars=12, train_limit=5, splits=(TRAIN, DEV, TEST))
    b = S.load_data(max_chars=12, train_limit=5, splits=(TRAIN, DEV, TEST))
    c = S.load_data(max_chars=12, train_limit=5, data_seed=3, splits=(TRAIN, DEV, TEST))
    assert len(a.train) == 5 and a.train == b.train and a.train != c.train
    assert set(a.train) <= set(_data().train)


def test_categories():
    cases = {("went", "go"): "change start", ("'s", "be"): "change start", ("studies", "study"): "change ending",
             ("children", "child"): "cut ending", ("States", "State"): "cut ending", ("The", "the"): "case only",
             ("home", "home"): "copy", ("me", "I"): "change start", ("made", "make"): "change ending"}
    for (form, lemma), want in cases.items():
        assert S.category(form, lemma) == want, (form, lemma)
    assert set(S.CATEGORIES) == set(cases.values())


def test_vocab_and_arrays():
    d = _data()
    v = d.vocab
    assert v.itos[:4] == list(S.SPECIALS) and v.itos[4] == "<ADJ>" and len(v) == len(set(v.itos))
    items = [S.Item("went", "VERB", "go"), S.Item("The", "DET", "the")]
    src, lengths = S.encode_sources(items, v)
    assert lengths.tolist() == [5, 4] and src.shape == (2, 5)
    assert src[0, 0] == v.tag("VERB") and v.decode(src[0]) == "went" and src[1, 4] == S.PAD_ID
    assert [v.itos[i] for i in src[1, 1:4]] == ["T", "h", "e"]
    assert v.chars("wé") == [v.stoi["w"], S.UNK_ID] and v.decode([v.stoi["e"], S.UNK_ID, S.EOS_ID, 9]) == "e\ufffd"
    tgt = S.encode_targets(items, v)
    assert tgt.shape == (2, 3) and v.decode(tgt[0]) == "go" and tgt[0, 2] == S.PAD_ID
    inp, gold = S._teacher_forcing(tgt)
    assert inp[:, 0].tolist() == [S.BOS_ID] * 2 and (inp[:, 1:] == tgt).all()
    assert gold[0].tolist() == [v.stoi["g"], v.stoi["o"], S.EOS_ID, S.IGNORE_INDEX]
    assert gold[1, 3] == S.EOS_ID
    with pytest.raises(ValueError, match="UPOS"):
        v.tag("NOUNS")


def test_aligned_targets():
    d = _data()
    v = d.vocab
    items = [S.Item("went", "VERB", "go"), S.Item("wo", "AUX", "will")]
    src, lengths, gold, fits = S.aligned_arrays(items, v, slots=1)
    assert lengths.tolist() == [6, 4]
    assert v.itos[src[0, 5]] == "[EOS]" and src[1, 4] == S.PAD_ID            # one extra slot, then padding
    assert gold[0].tolist() == [S.IGNORE_INDEX, v.stoi["g"], v.stoi["o"], S.EOS_ID, S.EOS_ID, S.EOS_ID]
    assert fits.tolist() == [True, False]                                    # "will" needs 4 > 2 + 1 positions
    assert gold[1].tolist()[:4] == [S.IGNORE_INDEX] + [v.stoi[c] for c in "wil"]
    assert gold[1, 4] == S.IGNORE_INDEX


# ----------------------------------------------------------------------------- directionality

def _random_src(rng, V, B=3, T=7):
    src = rng.integers(4, V, size=(B, T))
    lengths = np.array([T, T - 2, T - 3])
    for b, n in enumerate(lengths):
        src[b, n:] = S.PAD_ID
    return src, lengths


@pytest.mark.parametrize("bidirectional", [False, True])
def test_encoder_direction_by_perturbation(float64, bidirectional):
    V, H = 30, 5
    model = S.LSTMSeq2Seq(V, 6, H, 7, bidirectional, dropout=0.0)
    model.eval()
    rng = np.random.default_rng(0)
    src, lengths = _random_src(rng, V)
    k = 3
    changed = src.copy()
    changed[:, k] = np.where(src[:, k] == 5, 6, 5)             # a different character at position k only
    m1, _ = model.encode(src, lengths)
    m2, _ = model.encode(changed, lengths)
    d = np.abs(m1.numpy() - m2.numpy())                         # (B, T, E)
    fwd = d[:, :, :H]
    np.testing.assert_array_equal(fwd[:, :k], 0.0)             # →h_t for t < k never read position k
    assert (fwd[:, k].max(axis=-1) > 1e-6).all()                # ... →h_k did
    if bidirectional:
        bwd = d[:, :, H:]
        assert (bwd[:, :k].max(axis=-1) > 1e-9).all()           # ←h_t for t < k read it (right context)
        for b, n in enumerate(lengths):
            np.testing.assert_array_equal(bwd[b, k + 1:n], 0.0)  # ←h_t for t > k did not
    else:
        assert d.shape[-1] == H


def test_decoder_is_causal_and_greedy_matches_teacher_forcing(float64):
    V = 30
    model = S.LSTMSeq2Seq(V, 6, 5, 7, True, dropout=0.0)
    model.eval()
    rng = np.random.default_rng(1)
    src, lengths = _random_src(rng, V)
    tgt_in = np.concatenate([np.full((3, 1), S.BOS_ID), rng.integers(4, V, size=(3, 5))], axis=1)
    other = tgt_in.copy()
    other[:, 4] = 7
    a, b = model(src, lengths, tgt_in).numpy(), model(src, lengths, other).numpy()
    np.testing.assert_array_equal(a[:, :4], b[:, :4])           # step t reads y_<t only
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-6
    ids = model.greedy(src, lengths, max_len=6)
    forced = model(src, lengths, np.concatenate([np.full((3, 1), S.BOS_ID), ids[:, :-1]], axis=1)).numpy()
    forced[:, :, [S.PAD_ID, S.BOS_ID]] = -np.inf
    first_eos = [list(r).index(S.EOS_ID) + 1 if S.EOS_ID in r else len(r) for r in ids]
    for b, n in enumerate(first_eos):                            # greedy picks the argmax of what it read
        np.testing.assert_array_equal(forced[b, :n].argmax(axis=-1), ids[b, :n])


def test_aligned_model_reads_both_sides(float64):
    V = 30
    model = S.AlignedBiLSTM(V, 6, 5, dropout=0.0)
    model.eval()
    rng = np.random.default_rng(2)
    src, lengths = _random_src(rng, V)
    changed = src.copy()
    changed[:, 3] = np.where(src[:, 3] == 5, 6, 5)
    d = np.abs(model(src, lengths).numpy() - model(changed, lengths).numpy())
    assert (d[:, 0].max(axis=-1) > 1e-9).all()                  # output 0 depends on input 3 (right context)
    assert d.shape == (3, 7, V)


def test_transformer_batched_greedy_equals_the_library(float64):
    d = _data()
    model = S.build_model("transformer", dict(S.QUICK, d_model=16, nhead=2, dim_feedforward=24), len(d.vocab))
    model.eval()
    items = d.train + d.test
    ids = S.transformer_greedy(model, items, d.vocab, max_len=8)
    for it, row in zip(items, ids):
        ref = model.greedy([d.vocab.tag(it.upos)] + d.vocab.chars(it.form), max_len=8)
        assert d.vocab.decode(row) == d.vocab.decode(ref.tokens), it


# ----------------------------------------------------------------------------- sizes and scores

def test_parameter_formulas_and_budget():
    V, cfg = 57, dict(S.QUICK)
    plan, budget = S.plan_sizes(cfg, V)
    for name in ("uni-lstm", "bi-lstm"):
        m = S.build_model(name, cfg, V, plan)
        assert S.count_parameters(m) == S.lstm_seq2seq_params(V, cfg["embed_dim"], plan[name], cfg["dec_hidden"],
                                                              name == "bi-lstm")
        assert abs(S.count_parameters(m) - budget) / budget < 0.01, name
    aligned = S.build_model("bi-aligned", cfg, V, plan)
    assert S.count_parameters(aligned) == S.aligned_params(V, cfg["embed_dim"], plan["bi-aligned"])
    assert abs(S.count_parameters(aligned) - budget) / budget < 0.03
    assert plan["uni-lstm"] > plan["bi-lstm"]                   # the one-direction encoder is wider
    tf = S.build_model("transformer", cfg, V, plan)
    assert S._l2r_parameters(tf) < S.count_parameters(tf)


def test_levenshtein_and_scores():
    assert S.levenshtein("kitten", "sitting") == 3 and S.levenshtein("", "go") == 2 and S.levenshtein("go", "go") == 0
    d = _data()
    items = d.test                    # children/child ×2, The/the, went/go, houses/house, went(NOUN)/went
    by = {(i.form, i.upos): i for i in items}
    preds = [{"children": "child", "The": "The", "houses": "hous"}.get(i.form, "go" if i.upos == "VERB" else "wont")
             for i in items]
    s = S.score(preds, items, d.lookup)
    assert s["type_em"] == pytest.approx(2 / 5)                 # child, go
    assert s["token_em"] == pytest.approx(3 / 6)                # children counts twice
    assert s["unseen_em"] == 0.0 and s["unseen_types"] == 2
    assert s["by_category"]["cut ending"] == [1, 2] and s["by_category"]["case only"] == [0, 1]
    want_chars = {"children": 1.0, "The": 2 / 3, "went": 1.0, "houses": 4 / 5}
    acc = [want_chars.get(i.form, 1.0) if (i.form, i.upos) != ("went", "NOUN") else 3 / 4 for i in items]  # wont
    assert s["char_acc"] == pytest.approx(np.mean(acc))
    assert by[("went", "NOUN")].lemma == "went"
    b = S.baselines(d)
    assert b["copy"]["type_em"] == pytest.approx(1 / 5)         # only went/NOUN is its own lemma
    assert b["lookup"]["type_em"] == pytest.approx(4 / 5)       # all but houses (copied: "houses")
    with pytest.raises(ValueError, match="predictions"):
        S.score(["x"], items, d.lookup)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown setting"):
        S.run({"epoch": 2}, quick=True)
    with pytest.raises(ValueError, match="epochs"):
        S.run({"epochs": 0}, quick=True)
    with pytest.raises(ValueError, match="unknown models"):
        S.run({"models": "uni-lstm,tri-lstm"}, quick=True)
    with pytest.raises(ValueError, match="divisible"):
        S.run({"d_model": 30, "nhead": 4}, quick=True)
    with pytest.raises(ValueError, match="device"):
        S.run({}, quick=True, device="tpu")


# ----------------------------------------------------------------------------- whole runs

def _synthetic_run():
    settings = dict(epochs=2, batch_size=4, dev_eval_limit=None, beam_limit=None, embed_dim=8, enc_hidden=8,
                    dec_hidden=8, d_model=8, nhead=2, dim_feedforward=16)
    return S.run(settings, quick=True, progress=False, splits=(TRAIN, DEV, TEST))


def test_a_run_is_deterministic():
    a, b = _synthetic_run(), _synthetic_run()
    assert [r["model"] for r in a["rows"]] == ["uni-lstm", "bi-lstm", "bi-aligned", "transformer", "transformer",
                                               "transformer"]
    for ra, rb in zip(a["rows"], b["rows"]):
        assert ra["predictions"] == rb["predictions"]
        assert [h["loss"] for h in ra["history"]] == [h["loss"] for h in rb["history"]]
    assert a["transformer_nbest"] == b["transformer_nbest"]
    assert "| uni-lstm | greedy |" in a["table"] and "baseline: lookup" in a["table"]


@needs_ewt
def test_quick_setting_on_the_treebank(tmp_path):
    res = S.run(quick=True, progress=False)
    q = S.QUICK
    sizes = res["data"]["sizes"]
    assert sizes["train_types"] == q["train_limit"] and sizes["test_types"] == q["test_limit"]
    assert res["data"]["excluded"]["train"]["all_types"] > 20000            # the whole split was read
    d = S.load_data(q["dataset"], q["max_chars"], q["train_limit"], q["dev_limit"], q["test_limit"], q["data_seed"])
    copy = np.mean([it.form == it.lemma for it in d.test])
    assert res["baselines"]["copy"]["type_em"] == pytest.approx(copy)
    rows = {(r["model"], r["decoding"].split(" (")[0]): r for r in res["rows"]}
    assert {m for m, _ in rows} == set(S.MODELS)
    for r in res["rows"]:
        assert len(r["predictions"]) == r["test_items"] and 0 <= r["test"]["type_em"] <= 1
        assert abs(r["params"] - res["budget"]) / res["budget"] < 0.03 or r["model"] == "transformer"
    aligned = rows[("bi-aligned", "argmax per position")]
    assert aligned["test"]["type_em"] > 0.5                                            # it learned something
    assert all(len(p) <= len(it.form) + q["aligned_slots"] for p, it in zip(aligned["predictions"], d.test))
    beam = rows[("transformer", f"beam {q['beam_size']}")]["test"]["type_em"]
    rr = next(r for r in res["rows"] if "rerank" in r["decoding"])
    stats = rr["rerank_stats"]
    assert rr["test"]["type_em"] <= stats["in_nbest"] and beam <= stats["in_nbest"]       # the ceiling
    assert rr["test"]["type_em"] - beam == pytest.approx((stats["fixed"] - stats["broken"]) / stats["items"])
    assert len(res["transformer_nbest"]) == q["beam_limit"]
    path = S.save_json(res, tmp_path / "r.json")
    assert path.stat().st_size > 1000
    S.plot_results(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_command_line_errors(capsys):
    for argv, word in ((["--set", "bogus=1"], "bogus"), (["--set", "epochs"], "KEY=VALUE"),
                       (["--models", "uni-lstm,tri"], "tri"), (["--quick", "--demo"], "--demo"),
                       (["--set", "epochs=0"], "epochs")):
        with pytest.raises(SystemExit) as e:
            S.main(argv)
        assert e.value.code == 2
        assert word in capsys.readouterr().err, argv
