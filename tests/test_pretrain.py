"""MLM pretraining of a small BERT and its left-to-right twin (minibidir.experiments.pretrain).

* A tiny synthetic corpus (no data needed): packing into [CLS] piece [SEP] with [UNK] special,
  the learning-rate schedule, both objectives' losses fall within a few dozen steps, a run
  with a step limit is deterministic for its seed, checkpoints round-trip (weights, config,
  vocabulary, outputs) and fill the fine-tuning model.
* The held-out evaluation counts masked positions only: a model that copies its input scores
  exactly the fraction of masked positions left unchanged (10%), not the ~90% it would get over
  all tokens; a trained model's accuracy equals the one computed by hand from full logits.
* The left-to-right twin never sees the future: changing later tokens leaves its earlier
  outputs unchanged (the bidirectional model's change); its targets are the next tokens.
* The QUICK setting on the real corpora (skipped when the data is neither mirrored nor cached):
  the split is by document, the run is deterministic, and the command line writes the
  checkpoints and the tables.
"""
import json

import numpy as np
import pytest

import minibidir as mb
from minibidir import data
from minibidir.experiments import pretrain as P
from minibidir.models import BertForMaskedLM

HAVE_CORPUS = (all(data.available("wikitext2", s) for s in ("valid", "test"))
               and data.available("tiny_shakespeare") and data.available("state_union"))
needs_corpus = pytest.mark.skipif(not HAVE_CORPUS, reason="the English corpora are neither mirrored nor cached")
HAVE_POLARITY = data.available("rt_polarity", "pos") and data.available("rt_polarity", "neg")
needs_polarity = pytest.mark.skipif(not HAVE_POLARITY, reason="rt-polarity is neither mirrored nor cached")

# A tiny corpus with structure: each "sentence" is a fixed phrase, so a masked word is
# predictable from its neighbours and a next word from the previous ones.
PHRASES = ["the cat sat on the mat", "a dog ran in the park", "birds fly over the sea",
           "we read books at night", "the sun rises in the east"]


def tiny_docs(n_docs=12, seed=0):
    rng = np.random.default_rng(seed)
    return [" . ".join(PHRASES[i] for i in rng.integers(0, len(PHRASES), 30)) + " ." for _ in range(n_docs)]


@pytest.fixture(scope="module")
def tiny():
    docs = tiny_docs()
    tok = P.train_tokenizer(docs, vocab_size=60)
    train = P.pack_documents(tok, docs[:10], seq_len=24)
    held = P.make_heldout(P.pack_documents(tok, docs[10:], seq_len=24), tok)
    cfg = P.model_config(tok.vocab_size, hidden_size=32, num_layers=2, num_heads=2, seq_len=24, dropout=0.0)
    return tok, train, held, cfg


def run(objective, tiny, steps=30, seed=0, lr=3e-3):
    tok, train, held, cfg = tiny
    return P.pretrain(objective, train, held, tok, cfg, max_steps=steps, batch_size=8, lr=lr, warmup=0.1,
                      seed=seed, eval_every=10, eval_limit=4, progress=False, log=None)


# ----------------------------------------------------------------------------- data and schedule

def test_packing_wraps_pieces_and_marks_unk_special():
    tok = P.train_tokenizer(tiny_docs(2), vocab_size=60)
    text = "the cat sat [UNK] on the mat . " * 5
    enc = P.pack_documents(tok, [text], seq_len=10, min_tokens=3)
    body = tok.encode(text, add_special_tokens=False)
    assert sum(len(s) - 2 for s in enc.input_ids) == len(body)        # nothing lost (last piece >= 3 here)
    assert all(len(s) <= 10 for s in enc.input_ids)
    for ids, sp in zip(enc.input_ids, enc.special_tokens_mask):
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        np.testing.assert_array_equal(sp, np.isin(ids, [tok.cls_token_id, tok.sep_token_id, tok.unk_token_id]))
    assert np.concatenate(enc.input_ids).tolist().count(tok.unk_token_id) == 5
    short = P.pack_documents(tok, ["the cat"], seq_len=10, min_tokens=8)
    assert len(short) == 0


def test_lr_factor_warms_up_then_decays_to_zero():
    assert P.lr_factor(0.0, 0.1) == 0.0
    assert P.lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert P.lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert P.lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert P.lr_factor(1.0, 0.1) == 0.0 and P.lr_factor(1.5, 0.1) == 0.0


def test_ltr_labels_are_the_next_ordinary_token():
    ids = np.array([[2, 10, 11, 1, 12, 3, 0]])                 # [CLS] a b [UNK] c [SEP] [PAD]
    mask = np.array([[1, 1, 1, 1, 1, 1, 0]])
    special = np.array([[1, 0, 0, 1, 0, 1, 1]])
    np.testing.assert_array_equal(P.ltr_labels(ids, mask, special), [[10, 11, -100, 12, -100, -100, -100]])


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("objective", P.OBJECTIVES)
def test_loss_decreases_in_a_few_steps(tiny, objective):
    tok = tiny[0]
    r = run(objective, tiny, steps=30)
    loss = r["history"]["loss"]
    assert len(loss) == r["steps"] == 30
    assert loss[0] == pytest.approx(np.log(tok.vocab_size), abs=0.3)      # a fresh model guesses uniformly
    assert np.mean(loss[-5:]) < np.mean(loss[:3]) - 0.4, loss
    # held-out: better than chance (1 / vocabulary); the twin, which reads the current token,
    # learns the next one quickly, MLM first learns the token frequencies (its plateau)
    assert r["heldout"]["acc"] > (0.3 if objective == "ltr" else 2.0 / tok.vocab_size), r["heldout"]
    assert r["heldout"]["loss"] < np.log(tok.vocab_size) - 0.3
    assert r["history"]["tokens"][-1] == r["tokens"] and 30 * 8 * 8 <= r["tokens"] <= 30 * 8 * 24
    assert r["model"].config.causal == (objective == "ltr")


def test_a_step_limited_run_is_deterministic(tiny):
    a, b = run("mlm", tiny, steps=12), run("mlm", tiny, steps=12)
    assert a["history"]["loss"] == b["history"]["loss"]
    assert a["heldout"] == b["heldout"]
    for (k, x), (_, y) in zip(a["model"].state_dict().items(), b["model"].state_dict().items()):
        np.testing.assert_array_equal(x, y, err_msg=k)
    c = run("mlm", tiny, steps=12, seed=1)
    assert c["history"]["loss"] != a["history"]["loss"]


def test_both_objectives_start_from_the_same_weights(tiny):
    a = run("mlm", tiny, steps=1, lr=0.0)
    b = run("ltr", tiny, steps=1, lr=0.0)
    for (k, x), (_, y) in zip(a["model"].state_dict().items(), b["model"].state_dict().items()):
        np.testing.assert_array_equal(x, y, err_msg=k)


def test_time_budget_stops_the_run(tiny):
    tok, train, held, cfg = tiny
    r = P.pretrain("mlm", train, held, tok, cfg, time_budget_s=0.5, batch_size=8, progress=False, log=None)
    assert 0.5 <= r["train_time"] < 3.0 and r["steps"] >= 1
    assert r["history"]["lr"][-1] < 0.2 * max(r["history"]["lr"])       # the decay ran with the clock


# ----------------------------------------------------------------------------- held-out evaluation

class _CopyModel:
    """Predicts the token it reads at every position (logits one-hot on the input id)."""
    training = False

    def __init__(self, vocab):
        self.vocab = vocab

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, ids, attention_mask, labels=None, masked_positions=None):
        rows = np.asarray(ids)[masked_positions]
        logits = mb.tensor(10.0 * np.eye(self.vocab)[rows])
        loss = mb.functional.cross_entropy(logits, np.asarray(labels)[masked_positions])
        return loss, logits


def test_masked_accuracy_counts_only_masked_positions(tiny):
    tok, _, held, _ = tiny
    masked = held.mlm_labels != -100
    r = P.evaluate_heldout(_CopyModel(tok.vocab_size), held, "mlm", batch_size=3)
    assert r["count"] == masked.sum() and 0 < r["count"] < 0.25 * held.attention_mask.sum()
    unchanged = (held.masked_ids == held.input_ids) & masked
    assert r["acc"] == pytest.approx(unchanged.sum() / masked.sum())  # the 10% left as they were
    assert r["acc"] < 0.3
    # over every real token the copy model would look excellent: that is what must not be counted
    real = (held.attention_mask == 1)
    assert ((held.masked_ids == held.input_ids) & real).sum() / real.sum() > 0.8
    # about 15% of the ordinary tokens are masked, and the same ones on every call
    assert 0.12 < masked.sum() / (held.special_tokens_mask == 0).sum() < 0.18
    assert P.evaluate_heldout(_CopyModel(tok.vocab_size), held, "mlm", batch_size=64) == r


def test_heldout_accuracy_equals_a_hand_computation(tiny):
    held = tiny[2]
    for objective in P.OBJECTIVES:
        model = run(objective, tiny, steps=15)["model"]
        model.eval()
        ids = held.masked_ids if objective == "mlm" else held.input_ids
        labels = held.mlm_labels if objective == "mlm" else held.ltr_labels
        with mb.no_grad():
            logits = model(ids, held.attention_mask).data                      # every position
        pred = logits.argmax(-1)
        sel = labels != -100
        r = P.evaluate_heldout(model, held, objective, batch_size=5)
        assert r["count"] == sel.sum()
        assert r["acc"] == pytest.approx((pred[sel] == labels[sel]).mean())
        if objective == "ltr":
            sub = sel & held.at_masked
            assert r["count_at_masked"] == sub.sum() == (held.mlm_labels[:, 1:] != -100).sum()
            assert r["acc_at_masked"] == pytest.approx((pred[sub] == labels[sub]).mean())


# ----------------------------------------------------------------------------- the twin and the future

def test_the_left_to_right_twin_never_sees_the_future(tiny):
    tok, held = tiny[0], tiny[2]
    ltr, mlm = run("ltr", tiny, steps=10)["model"], run("mlm", tiny, steps=10)["model"]
    ids = held.input_ids[:4].copy()
    mask = held.attention_mask[:4]
    rng = np.random.default_rng(0)
    t = 9
    changed = ids.copy()
    changed[:, t + 1:] = rng.integers(5, tok.vocab_size, changed[:, t + 1:].shape)
    for model in (ltr, mlm):
        model.eval()
    with mb.no_grad():
        a, b = ltr(ids, mask).data, ltr(changed, mask).data
        c, d = mlm(ids, mask).data, mlm(changed, mask).data
    np.testing.assert_array_equal(a[:, :t + 1], b[:, :t + 1])        # bit for bit: no path from the future
    assert np.abs(a[:, t + 1:] - b[:, t + 1:]).max() > 1e-3
    assert np.abs(c[:, :t + 1] - d[:, :t + 1]).max() > 1e-3          # the bidirectional model does look right
    # and so the twin's next-token loss on the prefix does not depend on the rest
    labels = P.ltr_labels(ids, mask, held.special_tokens_mask[:4])
    labels[:, t:] = -100
    with mb.no_grad():
        la = ltr(ids, mask, labels=labels)[0].item()
        lb = ltr(changed, mask, labels=labels)[0].item()
    assert la == lb


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoints_round_trip(tiny, tmp_path):
    tok = tiny[0]
    for objective in P.OBJECTIVES:
        r = run(objective, tiny, steps=5)
        d = tmp_path / objective
        P.save_pretrained(d, r["model"], tok, objective=objective, result=P._summary(r))
        model, tok2, meta = P.load_pretrained(d)
        assert isinstance(model, BertForMaskedLM) and model.config == r["model"].config
        assert tok2.get_vocab() == tok.get_vocab()
        assert meta["objective"] == objective and meta["result"]["steps"] == 5
        for (k, x), (_, y) in zip(r["model"].state_dict().items(), model.state_dict().items()):
            np.testing.assert_array_equal(x, y, err_msg=k)
        ids = tiny[2].input_ids[:2]
        r["model"].eval()
        with mb.no_grad():
            np.testing.assert_array_equal(r["model"](ids).data, model(ids).data)
        # the fine-tuning model takes the encoder from the directory; "scratch" does not
        mb.manual_seed(0)
        clf = P.build_classifier(objective, d, dropout=0.0)
        assert clf.config.causal == (objective == "ltr")
        np.testing.assert_array_equal(clf.bert.encoder.layer[0].attention.self.query.weight.data,
                                      model.bert.encoder.layer[0].attention.self.query.weight.data)
        scratch = P.build_classifier("scratch", d)
        assert not scratch.config.causal
        assert not np.array_equal(scratch.bert.embeddings.word_embeddings.weight.data,
                                  model.bert.embeddings.word_embeddings.weight.data)
    with pytest.raises(ValueError, match="causal"):
        P.build_classifier("ltr", tmp_path / "mlm")
    with pytest.raises(FileNotFoundError, match="pretrain"):
        P.load_pretrained(tmp_path / "nothing")


def test_last_token_pooling_reads_the_last_real_token(tiny):
    cfg = tiny[3]
    mb.manual_seed(0)
    m = P.FineTuneModel(cfg, pooling="last")
    m.eval()
    ids = np.array([[2, 10, 11, 3, 0], [2, 12, 13, 14, 3]])
    mask = (ids != 0).astype(np.int64)
    with mb.no_grad():
        seq, _ = m.bert(ids, mask)
        v = m._pool(seq, None, mask)
    np.testing.assert_array_equal(v.data, seq.data[[0, 1], [3, 4]])
    with pytest.raises(ValueError, match="pooling"):
        P.FineTuneModel(cfg, pooling="max")


# ----------------------------------------------------------------------------- the real corpora (QUICK)

@pytest.fixture(scope="module")
def quick_corpus():
    if not HAVE_CORPUS:
        pytest.skip("the English corpora are neither mirrored nor cached")
    return P.prepare_corpus(**{k: P.QUICK[k] for k in P.CORPUS_KEYS}, log=None)


@needs_corpus
def test_split_is_by_document_and_seeded():
    corpus = P.load_corpus(max_docs=10, max_doc_chars=2000)
    assert set(corpus) == set(P.SOURCES)
    tr, he = P.split_corpus(corpus, 0.1, seed=0)
    tr2, he2 = P.split_corpus(corpus, 0.1, seed=0)
    assert tr == tr2 and he == he2
    for k in P.SOURCES:
        assert len(he[k]) == 1 and len(tr[k]) == 9
        assert not set(he[k]) & set(tr[k])
    full = P.load_corpus()
    assert len(full["state_union"]) == 65 and len(full["wikitext2"]) > 100
    assert all("<unk>" not in d and "@-@" not in d for d in full["wikitext2"][:20])


@needs_corpus
def test_quick_pretraining_runs_and_is_deterministic(quick_corpus):
    a = P.run_pretraining(P.QUICK, corpus=quick_corpus, progress=False, log=None)
    b = P.run_pretraining(P.QUICK, objectives=("mlm",), corpus=quick_corpus, progress=False, log=None)
    ra = a["results"]["mlm"]
    assert ra["steps"] == P.QUICK["max_steps"]
    assert ra["history"]["loss"] == b["results"]["mlm"]["history"]["loss"]
    assert ra["heldout"] == b["results"]["mlm"]["heldout"]
    for obj, r in a["results"].items():
        assert np.mean(r["history"]["loss"][-5:]) < np.mean(r["history"]["loss"][:3]) - 0.5, obj
        assert r["tokens_per_s"] > 0 and r["heldout"]["count"] > 100
    assert "| mlm |" in P.format_pretraining(a["results"])


@needs_corpus
@needs_polarity
def test_command_line_quick(tmp_path):
    out, js = tmp_path / "runs", tmp_path / "r.json"
    assert P.main(["all", "--quick", "--out", str(out), "--json", str(js), "--no-progress"]) == 0
    for obj in P.OBJECTIVES:
        for f in ("checkpoint.safetensors", "config.json", "vocab.txt"):
            assert (out / obj / f).exists()
    res = json.loads(js.read_text())
    assert set(res["pretraining"]) == set(P.OBJECTIVES)
    assert sorted(r["kind"] for r in res["table5"]) == sorted(P.MODEL_KINDS)
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["n_test"] == 256 for r in res["table5"])
    # the sweep reads the checkpoint directory; λ = 0 runs once per seed
    sweep = P.run_sweep(str(out), lams=(0.0, 0.3), schedules=("joint", "alternating"), seeds=(0,),
                        settings=P.QUICK, progress=False, log=None, ft_train_limit=64, ft_eval_limit=64)
    assert [(r["lam"], r["schedule"]) for r in sweep] == [(0.0, "joint"), (0.3, "joint"), (0.3, "alternating")]
    assert "± " in P.format_sweep(sweep)
