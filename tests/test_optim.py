"""Optimizers, schedules and clipping follow torch.optim step for step; checkpoints are
pickle-free, atomic, and resume a run exactly."""
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import functional as F
from minibidir import nn, optim, checkpoint

torch = pytest.importorskip("torch")


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 5)), rng.standard_normal((8, 3)), rng.standard_normal((5, 3)), rng.standard_normal(3)


def _trajectories(make_mb, make_torch, steps=20, sched=None):
    x, y, w0, b0 = _problem()
    w, b = mb.tensor(w0.copy(), requires_grad=True), mb.tensor(b0.copy(), requires_grad=True)
    tw, tb = torch.tensor(w0.copy(), requires_grad=True), torch.tensor(b0.copy(), requires_grad=True)
    o1, o2 = make_mb([w, b]), make_torch([tw, tb])
    s1 = s2 = None
    if sched:
        s1, s2 = sched[0](o1), sched[1](o2)
    for _ in range(steps):
        loss = ((F.tanh(mb.tensor(x) @ w + b) - mb.tensor(y)) ** 2).mean()
        o1.zero_grad()
        loss.backward()
        o1.step()
        tl = ((torch.tanh(torch.tensor(x) @ tw + tb) - torch.tensor(y)) ** 2).mean()
        o2.zero_grad()
        tl.backward()
        o2.step()
        if sched:
            s1.step()
            s2.step()
            assert s1.get_last_lr() == pytest.approx(s2.get_last_lr(), rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), rtol=1e-11, atol=1e-13)
    assert not np.allclose(w.numpy(), w0), "the optimizer did not move the parameters"


@pytest.mark.parametrize("kw", [
    dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01), dict(lr=0.1, weight_decay=0.1)])
def test_sgd_matches_torch(kw):
    _trajectories(lambda p: optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw))


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
                                dict(lr=0.01, weight_decay=0.05), dict(lr=0.01, amsgrad=True)])
def test_adam_matches_torch(kw):
    _trajectories(lambda p: optim.Adam(p, **kw), lambda p: torch.optim.Adam(p, **kw))


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1, amsgrad=True)])
def test_adamw_matches_torch(kw):
    _trajectories(lambda p: optim.AdamW(p, **kw), lambda p: torch.optim.AdamW(p, **kw))


def test_linear_warmup_decay_matches_a_torch_lambda_schedule():
    w, T = 5, 20
    lam = lambda t: t / w if t < w else max(0.0, (T - t) / (T - w))
    _trajectories(lambda p: optim.Adam(p, lr=0.02), lambda p: torch.optim.Adam(p, lr=0.02),
                  sched=(lambda o: optim.LinearWarmupDecay(o, w, T),
                         lambda o: torch.optim.lr_scheduler.LambdaLR(o, lam)))


def test_cosine_annealing_matches_torch():
    _trajectories(lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                  sched=(lambda o: optim.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001)))


def test_warmup_cosine_shape():
    p = mb.tensor(np.zeros(1), requires_grad=True)
    o = optim.SGD([p], lr=1.0)
    s = optim.WarmupCosine(o, 4, 12, min_factor=0.1)
    lrs = [s.get_last_lr()[0]]
    for _ in range(12):
        s.step()
        lrs.append(s.get_last_lr()[0])
    assert lrs[:5] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (100.0, 2.0), (0.3, math.inf), (1.0, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in [(4, 3), (3,), (2, 2, 2)]]
    ps = [mb.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, t, a in zip(ps, ts, arrays):
        p.grad = mb.tensor(a * 2)
        t.grad = torch.tensor(a * 2)
    n1 = optim.clip_grad_norm_(ps, max_norm, norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    assert n1.item() == pytest.approx(n2.item(), rel=1e-12)
    for p, t in zip(ps, ts):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def test_clip_does_not_touch_a_shared_gradient_array_twice():
    a, b = mb.tensor(np.ones(2), requires_grad=True), mb.tensor(np.ones(2), requires_grad=True)
    (a + b).sum().backward()                 # a.grad and b.grad start as the same array
    optim.clip_grad_norm_([a, b], 1.0)
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy())
    assert np.sqrt((a.grad.numpy() ** 2).sum() + (b.grad.numpy() ** 2).sum()) == pytest.approx(1.0, rel=1e-5)


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([mb.tensor([1.0], requires_grad=True)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="requires_grad"):
        optim.Adam([mb.tensor([1.0])])


# ----------------------------------------------------------------------------- checkpoints

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, 20)

    def forward(self, ids):
        return self.out(self.drop(self.emb(ids)))


def _train(model, opt, sched, steps, data):
    losses = []
    for ids, tgt in data[:steps]:
        loss = F.cross_entropy(model(ids), tgt)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _setup(seed):
    mb.manual_seed(seed)
    model = Tiny()
    opt = optim.AdamW(model.parameters(), lr=0.01)
    sched = optim.LinearWarmupDecay(opt, 3, 12)
    return model, opt, sched


def test_resume_reproduces_the_uninterrupted_loss_curve_exactly(tmp_path):
    rng = np.random.default_rng(0)
    data = [(rng.integers(0, 20, 16), rng.integers(0, 20, 16)) for _ in range(12)]
    model, opt, sched = _setup(1)
    full = _train(model, opt, sched, 12, data)

    model, opt, sched = _setup(1)
    first = _train(model, opt, sched, 5, data)
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(path, model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    rng=mb.backend.get_rng_state(), step=5)
    del model, opt, sched

    mb.manual_seed(999)                       # a different process state; the checkpoint restores it
    model, opt, sched = _setup(2)
    state = checkpoint.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    mb.backend.set_rng_state(state["rng"])
    assert state["step"] == 5
    rest = _train(model, opt, sched, 12, data[5:] + [None] * 0)[:7]
    assert first + rest == full                # bit for bit


def test_checkpoint_is_plain_safetensors_without_pickle(tmp_path):
    path = tmp_path / "m.safetensors"
    model = Tiny()
    checkpoint.save_state_dict(path, model.state_dict())
    with open(path, "rb") as f:
        head = f.read(200)
    assert b"__reduce__" not in head and head[8:9] == b"{"      # a JSON header, not a pickle
    loaded = checkpoint.load_state_dict(path)
    assert set(loaded) == set(model.state_dict())
    with pytest.raises(ValueError, match="not written by minibidir"):
        checkpoint.load(path)


def test_a_crash_mid_save_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(path, model={"w": np.arange(4.0)}, step=1)
    import safetensors.numpy as stn

    def crash(arrays, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(stn, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, model={"w": np.zeros(4)}, step=2)
    state = checkpoint.load(path)
    assert state["step"] == 1 and state["model"]["w"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]      # no temporary left


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(path, model={"w": np.arange(100.0)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        checkpoint.load(path)


def test_optimizer_state_dict_has_torch_structure():
    model = Tiny()
    opt = optim.Adam(model.parameters(), lr=0.01)
    F.cross_entropy(model(np.arange(5)), np.arange(5)).backward()
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"} and sd["param_groups"][0]["params"] == [0, 1, 2]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
