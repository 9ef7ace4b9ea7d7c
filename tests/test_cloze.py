"""Experiment 1: the cloze test (predict a hidden word from its left context, its right context,
or both) with LSTMs and Transformers at equal parameter budgets.

* The offline corpus is real English from Python's own documentation, large enough, and is read
  without importing (running) any module.
* Cloze items: [MASK] at the centre, targets are in-vocabulary words, windows are the text.
* Directionality by perturbation: a left-only model's prediction does not move when the right
  context changes (and does when the left one does); right-only the mirror image; the
  bidirectional models move with either side.
* Budgets: every model's parameter count is within a few per cent of the shared budget.
* The QUICK setting trains end to end and the BiLSTM beats the left-to-right LSTM clearly.
"""
import sys

import numpy as np
import pytest

import minibidir as mb
from minibidir import data
from minibidir.experiments import cloze as C
from minibidir.nn import LSTM


def test_tokenize_lowercases_and_splits_words_numbers_punctuation():
    assert C.tokenize("Return the SUM of x_1 and *y*, don't round --- 42.") == [
        "return", "the", "sum", "of", "x", "_", "1", "and", "*", "y", "*", ",", "don't", "round", "---",
        "42", "."]
    assert C.tokenize("an <unk> word") == ["an", "<unk>", "word"]


def test_stdlib_corpus_is_real_english_read_without_running_modules():
    risky = ("antigravity", "this", "tkinter", "turtle", "idlelib")
    before = {m for m in risky if m in sys.modules}
    C.stdlib_documents.cache_clear()
    docs = C.stdlib_documents()
    assert {m for m in risky if m in sys.modules} == before       # nothing was imported (run)
    text = "\n".join(docs).lower()
    assert "beautiful is better than ugly" in text               # the Zen, decoded from this.py
    assert "return a new" in text                                # docstrings
    corpus = C.load_corpus("stdlib")
    n = corpus.num_tokens
    assert n["train"] > 250_000 and n["eval"] > 20_000, n
    words = [t for d in corpus.train[:50] for t in d if C._is_word(t)]
    assert len(words) > 0.5 * sum(len(d) for d in corpus.train[:50])    # mostly words, not symbols


def test_wikitext_articles_drop_headings_and_rejoin_tokens():
    lines = [" = Alpha = ", "", " The well @-@ known <unk> cost 1 @,@ 000 . ", " = = History = = ",
             " It grew . ", " = Beta = ", " Second article . "]
    arts = C._wikitext_articles(lines)
    assert arts == [["the", "well", "-", "known", "<unk>", "cost", "1", ",", "000", ".", "it", "grew", "."],
                    ["second", "article", "."]]
    vocab = C.Vocab(arts, size=100)
    assert "<unk>" not in vocab.stoi
    assert vocab.encode(["<unk>"])[0] == C.UNK_ID


def test_cloze_items_hide_the_centre_word():
    docs = [["the", "cat", "sat", "on", "the", "mat", "."], ["a", "dog", "ran", "!"]]
    vocab = C.Vocab(docs, size=6)             # 'the', then '!', '.', 'a', 'cat', 'dog'; the rest is [UNK]
    stream = vocab.stream(docs)
    assert C.SEP_ID in stream.tolist()
    items = C.make_cloze_set(stream, vocab, context=2)
    assert items.windows.shape == (len(items), 5)
    assert (items.windows[:, 2] == C.MASK_ID).all()
    assert vocab.is_word[items.targets].all() and (items.targets != C.UNK_ID).all()
    padded = np.concatenate([[C.PAD_ID] * 2, stream, [C.PAD_ID] * 2])
    for w, t, p in zip(items.windows, items.targets, items.positions):
        assert stream[p] == t
        expect = padded[p:p + 5].copy()
        expect[2] = C.MASK_ID
        assert (w == expect).all()
    # every in-vocabulary word is an item; punctuation and [UNK] never are
    assert len(items) == int(vocab.is_word[stream].sum())
    sub = C.make_cloze_set(stream, vocab, 2, limit=3, rng=np.random.default_rng(0))
    assert len(sub) == 3 and (np.diff(sub.positions) > 0).all()


CFG = dict(C.QUICK, models=tuple(C.MODELS), context=3, embed_dim=16, d_model=16, nhead=2, num_layers=2,
           dim_feedforward=32)


def test_lstm_parameter_formula():
    for dirs in (1, 2):
        assert C.lstm_params(7, 5, dirs) == C.count_parameters(LSTM(7, 5, bidirectional=dirs == 2))


@pytest.mark.parametrize("cfg", [CFG, C.DEMO, C.FULL], ids=["tiny", "demo", "full"])
def test_equal_parameter_budgets(cfg):
    cfg = dict(cfg, models=tuple(C.MODELS))
    V = cfg["vocab_size"] + len(C.SPECIALS)
    plan, budget = C.plan_models(cfg, V)
    counts = {}
    for name in C.MODELS:
        mb.manual_seed(0)
        counts[name] = C.count_parameters(C.build_model(name, cfg, V, plan))
    assert counts["tf-left"] == counts["tf-right"] == counts["tf-full"] == budget
    for name, n in counts.items():
        assert abs(n - budget) <= 0.05 * budget, (name, n, budget)
    # the bidirectional LSTM is narrower per direction than the unidirectional one
    assert plan["bilstm"]["width"] < plan["lstm-left"]["width"] == plan["lstm-right"]["width"]
    assert plan["tf-two-tower"]["tower"][0] < cfg["d_model"]


def _logits(model, w):
    with mb.no_grad():
        return model(w).numpy()


@pytest.mark.parametrize("name", list(C.MODELS))
def test_each_model_reads_only_its_side(name):
    """Perturbation: replace every word on one side of the gap and compare predictions."""
    V = 50
    mb.manual_seed(1)
    plan, _ = C.plan_models(dict(CFG, models=(name,)), V)
    model = C.build_model(name, CFG, V, plan)
    model.eval()
    c = CFG["context"]
    rng = np.random.default_rng(0)
    w = rng.integers(4, V, size=(6, 2 * c + 1))
    w[:, c] = C.MASK_ID
    left, right = w.copy(), w.copy()
    left[:, :c] = rng.integers(4, V, size=(6, c))
    right[:, c + 1:] = rng.integers(4, V, size=(6, c))
    base = _logits(model, w)
    moved_by_left = not np.allclose(_logits(model, left), base, atol=1e-6)
    moved_by_right = not np.allclose(_logits(model, right), base, atol=1e-6)
    reads = C.MODELS[name][1]
    assert moved_by_left == (reads in ("left", "both")), name
    assert moved_by_right == (reads in ("right", "both")), name
    if reads == "left":                       # not merely close: exactly the same numbers
        assert np.array_equal(_logits(model, right), base)
    if reads == "right":
        assert np.array_equal(_logits(model, left), base)


def test_training_is_seeded():
    corpus = C.load_corpus("stdlib")
    vocab = C.Vocab(corpus.train[:40], 200)
    items = C.make_cloze_set(vocab.stream(corpus.train[:40]), vocab, 3, limit=600,
                             rng=np.random.default_rng(0))
    cfg = dict(CFG, epochs=1, batch_size=100)
    runs = []
    for _ in range(2):
        mb.manual_seed(3)
        m = C.build_model("tf-two-tower", cfg, len(vocab))
        runs.append(C.train_model(m, items, cfg))
    assert runs[0] == runs[1] and np.isfinite(runs[0]).all()


def test_quick_run_bidirectional_beats_left_only(tmp_path):
    res = C.run_cloze(quick=True, progress=False, out_dir=tmp_path, plot_name="q.png")
    acc = {r["model"]: r["accuracy"] for r in res["models"]}
    assert set(acc) == {"lstm-left", "bilstm"}
    base = res["baseline"]["accuracy"]
    assert acc["lstm-left"] > base + 0.02, (acc, base)          # learned something from the left
    assert acc["bilstm"] > acc["lstm-left"] + 0.03, acc          # and both sides clearly help
    for r in res["models"]:
        assert abs(r["params"] - res["budget"]) <= 0.05 * res["budget"]
        assert r["top5"] >= r["accuracy"] and r["loss"] > 0
    assert res["corpus"]["train_items"] == C.QUICK["max_train"]
    assert "| bilstm | both |" in res["table"] and "baseline" in res["table"]
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_bad_settings_are_reported():
    with pytest.raises(ValueError, match="unknown models"):
        C.run_cloze(models=["lstm-up"], quick=True, progress=False, plot_name=None)
    with pytest.raises(ValueError, match="unknown corpus"):
        C.run_cloze(data="gutenberg", quick=True, progress=False, plot_name=None)
    with pytest.raises(ValueError, match="unknown setting"):
        C.run_cloze(quick=True, settings={"hidden": 3}, progress=False, plot_name=None)
    with pytest.raises(ValueError, match="device"):
        C.run_cloze(quick=True, device="tpu", progress=False, plot_name=None)


@pytest.mark.skipif(not all(data.available("wikitext2", s) for s in ("valid", "test")),
                    reason="WikiText-2 is neither mirrored nor cached")
def test_wikitext_corpus():
    corpus = C.load_corpus("wikitext2")
    assert 150_000 < corpus.num_tokens["train"] < 260_000
    assert 150_000 < corpus.num_tokens["eval"] < 280_000
    tokens = {t for d in corpus.train for t in d}
    assert "@-@" not in tokens and "<unk>" in tokens
    assert len(corpus.train) > 40 and len(corpus.eval) > 40            # articles


@pytest.mark.parametrize("backend", ["standin", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_same_numbers_on_the_device(backend):
    from minibidir import backend as B
    kw = dict(quick=True, models=["lstm-right", "tf-two-tower"], progress=False, plot_name=None,
              settings={"max_train": 600, "max_eval": 400, "epochs": 1})
    host = C.run_cloze(**kw)
    with B.backend(backend):
        dev = C.run_cloze(device="cuda", **kw)
    assert dev["device"] == "cuda"
    tol = 1e-5 if backend == "standin" else 2e-3
    for h, d in zip(host["models"], dev["models"]):
        assert h["model"] == d["model"] and h["params"] == d["params"]
        assert d["train_loss"] == pytest.approx(h["train_loss"], rel=tol)
        assert d["loss"] == pytest.approx(h["loss"], rel=tol)
