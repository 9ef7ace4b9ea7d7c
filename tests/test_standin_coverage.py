"""Stand-in coverage: everything public runs forward *and* backward on the CPU stand-in for
CuPy, and gives NumPy's numbers.

The stand-in (:mod:`minibidir.standin`) refuses every implicit mix of host and device arrays,
as CuPy does, so a library function that calls ``np.`` on device data, or forgets to move a
host array, fails here on a machine without a GPU.  This file audits that every public piece
of the library has been run that way:

* every op in ``minibidir.functional.__all__`` has a small call in :data:`OP_CASES` (an op
  added to ``__all__`` without one fails :func:`test_every_functional_op_has_a_standin_case`).
  Each call runs on NumPy and on the stand-in, in float64, and the outputs and every input
  gradient must agree (the two backends run the same NumPy kernels underneath; only the
  embedding's scatter-add takes another summation order on the host).
* every layer of ``minibidir.nn`` (an exported layer without a case fails
  :func:`test_every_nn_layer_has_a_training_step_case`) and the trainable models of
  ``minibidir.models`` (BiLSTMEncoder/Decoder, BiTransformerEncoder in both modes,
  BiTransformerDecoder, Seq2SeqBiTransformer, BertModel, BertForMaskedLM with and without
  ``masked_positions`` and causal, BertForSequenceClassification with its three losses) take two
  training steps (forward, backward, gradient clipping, an optimizer update) on each backend from
  the same weights; losses, gradients and updated weights must agree, and every parameter,
  gradient and optimizer buffer must stay on the device.  (``tests/test_transformer.py``,
  ``test_recurrent.py``, ``test_attention.py``, ``test_positional.py`` and
  ``test_bidirectional.py`` already compare the forward and backward passes of several of
  these with PyTorch on the stand-in; what they do not run is the update, which is what the
  step cases add.)
* the optimizers (SGD with momentum/Nesterov/dampening/weight decay, Adam with L2 and AMSGrad,
  AdamW), a schedule and both kinds of gradient clipping on device parameters; checkpoints
  written from the device and loaded back onto it (model and optimizer moments); greedy and
  beam search and reranking with step functions that return device tensors.
* the Trainer: ``tests/test_train.py::test_trainer_and_resume_on_every_backend`` covers the
  joint schedule with resumption; here the alternating schedule with early stopping and the
  best checkpoint, masked-LM training (:func:`~minibidir.train.train_mlm`, evaluation by
  :func:`~minibidir.train.evaluate_mlm`) and plain fine-tuning (:func:`~minibidir.train.fine_tune`).

The real CuPy backend runs the same cases under the ``gpu`` marker (skipped without a device),
with tolerances for a GPU's rounding, without dropout (CuPy draws its masks from its own
generator) and with SGD in place of Adam in the layer and model steps (Adam turns a gradient
that is zero up to rounding into a full step).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B
from minibidir import checkpoint as ckpt
from minibidir import functional as F
from minibidir import nn, standin
from minibidir import train as T
from minibidir.models import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel,
                              BiLSTMDecoder, BiLSTMEncoder, BiTransformerDecoder, BiTransformerEncoder,
                              Seq2SeqBiTransformer, beam_search, greedy_search, next_token_labels, rerank)
from minibidir.optim import (SGD, Adam, AdamW, CosineAnnealingLR, LinearWarmupDecay, WarmupCosine,
                             clip_grad_norm_)

DEVICES = ["standin", pytest.param("cupy", marks=pytest.mark.gpu)]


def _tol(device):
    """(rtol, atol) for device-vs-host comparisons in float64.  The stand-in runs NumPy's own
    kernels (differences are summation order only); a GPU's kernels round differently."""
    return (1e-12, 1e-13) if device == "standin" else (1e-9, 1e-11)


def _xp(device):
    return B.array_module(device)


def _on(xp, a):
    """A host array copied to backend ``xp`` (explicitly, as CuPy wants)."""
    return a if xp is np else xp.asarray(a)


def _assert_on(xp, arrays, what):
    for i, a in enumerate(arrays):
        assert B.get_array_module(a) is xp, f"{what} {i} lives on {B.get_array_module(a).__name__}, not {xp.__name__}"


def _close(got, want, rtol, atol, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


# ============================================================================ functional ops

class Case:
    """One small call of an op.  ``inputs``: host float64 arrays (each becomes a Tensor that
    requires grad); ``call(dev, *tensors)``: ``dev(array)`` puts a host array (ids, targets,
    masks) on the backend under test."""

    def __init__(self, inputs, call):
        self.inputs, self.call = inputs, call


def _r(*shape, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


def _pos(*shape, seed=0):
    return _r(*shape, seed=seed, low=0.5, high=2.5)


def _nz(*shape, seed=0):
    a = _r(*shape, seed=seed)
    return np.where(a >= 0, a + 0.5, a - 0.5)


_MASK = np.array([[True, False, True], [False, False, True]])
_TARGET = np.array([[0, 3], [-100, 1], [2, 2]])            # (3, 2) ids into 4 classes, one ignored
_IDS = np.array([[1, 4, 4], [0, 2, 7]])

#: op name -> a small call.  Aliases get their own entry (the call goes through the alias).
OP_CASES = {
    # arithmetic (broadcasting operands)
    "add": Case([_r(2, 3), _r(3, seed=1)], lambda d, a, b: F.add(a, b)),
    "sub": Case([_r(2, 1, 3), _r(4, 3, seed=1)], lambda d, a, b: F.sub(a, b)),
    "mul": Case([_r(2, 3), _r(2, 1, seed=1)], lambda d, a, b: F.mul(a, b)),
    "div": Case([_r(2, 3), _nz(3, seed=1)], lambda d, a, b: F.div(a, b)),
    "neg": Case([_r(2, 3)], lambda d, a: F.neg(a)),
    "pow": Case([_pos(2, 3), _r(3, seed=1)], lambda d, a, b: (F.pow(a, 3), F.pow(a, 0.5), F.pow(a, b))),
    "matmul": Case([_r(2, 3, 4), _r(4, 5, seed=1)], lambda d, a, b: F.matmul(a, b)),
    "linear": Case([_r(2, 3, 4), _r(5, 4, seed=1), _r(5, seed=2)], lambda d, x, w, b: F.linear(x, w, b)),
    # elementwise
    "exp": Case([_r(2, 3)], lambda d, x: F.exp(x)),
    "log": Case([_pos(2, 3)], lambda d, x: F.log(x)),
    "sqrt": Case([_pos(2, 3)], lambda d, x: F.sqrt(x)),
    "abs": Case([_nz(2, 3)], lambda d, x: F.abs(x)),
    "tanh": Case([_r(2, 3)], lambda d, x: F.tanh(x)),
    "sigmoid": Case([_r(2, 3) * 10], lambda d, x: F.sigmoid(x)),
    "relu": Case([_nz(2, 3)], lambda d, x: F.relu(x)),
    "gelu": Case([_r(2, 3)], lambda d, x: (F.gelu(x), F.gelu(x, approximate="tanh"))),
    "maximum": Case([_r(2, 3), _r(3, seed=1)], lambda d, a, b: F.maximum(a, b)),
    "minimum": Case([_r(2, 3), _r(2, 1, seed=1)], lambda d, a, b: F.minimum(a, b)),
    "clip": Case([_r(2, 3)], lambda d, x: F.clip(x, -0.5, 0.7)),
    "clamp": Case([_r(2, 3)], lambda d, x: F.clamp(x, min=-0.5)),
    "where": Case([_r(2, 3), _r(3, seed=1)], lambda d, a, b: F.where(d(_MASK), a, b)),
    "masked_fill": Case([_r(2, 3)], lambda d, x: F.masked_fill(x, d(_MASK), -3.0)),
    # joining and splitting
    "concat": Case([_r(2, 3), _r(2, 1, seed=1)], lambda d, a, b: F.concat([a, b, a], axis=1)),
    "cat": Case([_r(2, 3), _r(1, 3, seed=1)], lambda d, a, b: F.cat([a, b], dim=0)),
    "stack": Case([_r(2, 3), _r(2, 3, seed=1)], lambda d, a, b: F.stack([a, b], axis=-1)),
    "split": Case([_r(2, 5)], lambda d, x: tuple(F.split(x, [1, 3, 1], axis=1))),
    "chunk": Case([_r(5, 2)], lambda d, x: tuple(F.chunk(x, 2))),
    # softmax family and losses
    "softmax": Case([_r(2, 3, 4)], lambda d, x: F.softmax(x, axis=1)),
    "log_softmax": Case([_r(2, 3, 4)], lambda d, x: F.log_softmax(x, -1)),
    "logsumexp": Case([_r(2, 3, 4)], lambda d, x: F.logsumexp(x, axis=1, keepdims=True)),
    "cross_entropy": Case([_r(3, 4, 2)], lambda d, x: (
        F.cross_entropy(x, d(_TARGET), label_smoothing=0.1),
        F.cross_entropy(x, d(_TARGET), reduction="none"))),
    "nll_loss": Case([_r(3, 4)], lambda d, x: F.nll_loss(F.log_softmax(x, -1), d(np.array([1, -100, 3])))),
    "binary_cross_entropy_with_logits": Case([_r(2, 3) * 5, _r(2, 3, seed=1, low=0, high=1)], lambda d, x, y: (
        F.binary_cross_entropy_with_logits(x, y, pos_weight=mb.Tensor(d(np.array([2.0, 0.5, 1.0])))),
        F.binary_cross_entropy_with_logits(x, y, reduction="none"))),
    "mse_loss": Case([_r(2, 3), _r(2, 3, seed=1)], lambda d, a, b: F.mse_loss(a, b, reduction="sum")),
    # layers
    "dropout": Case([_r(4, 5)], lambda d, x: F.dropout(x, 0.3)),
    "embedding": Case([_r(8, 3)], lambda d, w: (F.embedding(d(_IDS), w, padding_idx=4),
                                                F.embedding(mb.Tensor(d(_IDS)), w))),
    "layer_norm": Case([_r(2, 3, 4), _r(4, seed=1), _r(4, seed=2)],
                       lambda d, x, w, b: F.layer_norm(x, 4, w, b)),
    "scaled_dot_product_attention": Case(
        [_r(2, 2, 3, 4), _r(2, 2, 5, 4, seed=1), _r(2, 2, 5, 4, seed=2)],
        lambda d, q, k, v: (
            F.scaled_dot_product_attention(q, k, v, attn_mask=d(np.tril(np.ones((3, 5), bool)))),
            F.scaled_dot_product_attention(q, k, v, attn_mask=d(np.zeros((3, 5))), is_causal=True,
                                           return_weights=True)[1])),
    # shapes and reductions
    "reshape": Case([_r(2, 6)], lambda d, x: F.reshape(x, 3, -1)),
    "transpose": Case([_r(2, 3, 4)], lambda d, x: F.transpose(x, 0, 2)),
    "permute": Case([_r(2, 3, 4)], lambda d, x: F.permute(x, 2, 0, 1)),
    "swapaxes": Case([_r(2, 3, 4)], lambda d, x: F.swapaxes(x, 1, 2)),
    "squeeze": Case([_r(2, 1, 3)], lambda d, x: F.squeeze(x, 1)),
    "unsqueeze": Case([_r(2, 3)], lambda d, x: F.unsqueeze(x, 1)),
    "expand": Case([_r(1, 3)], lambda d, x: F.expand(x, 4, 3)),
    "broadcast_to": Case([_r(3)], lambda d, x: F.broadcast_to(x, (2, 4, 3))),
    "flatten": Case([_r(2, 3, 4)], lambda d, x: F.flatten(x, 1)),
    "sum": Case([_r(2, 3, 4)], lambda d, x: (F.sum(x), F.sum(x, axis=(0, 2), keepdims=True))),
    "mean": Case([_r(2, 3, 4)], lambda d, x: F.mean(x, axis=1)),
    "max": Case([_r(2, 3, 4)], lambda d, x: F.max(x, axis=-1)),
    "min": Case([_r(2, 3, 4)], lambda d, x: F.min(x, axis=0, keepdims=True)),
    "var": Case([_r(2, 3, 4)], lambda d, x: (F.var(x, axis=1), F.var(x, correction=0))),
    "getitem": Case([_r(4, 5)], lambda d, x: (F.getitem(x, (d(np.array([0, 2, 0])), slice(1, None))),
                                               F.getitem(x, d(np.array([True, False, True, True]))))),
    "astype": Case([_r(2, 3)], lambda d, x: F.astype(x, np.float32) * 2.0),
}

#: Public ops that take no arrays, each with the reason it needs no stand-in run.  (None today:
#: every op of ``functional.__all__`` takes a tensor.)
EXEMPT: dict[str, str] = {}


def test_every_functional_op_has_a_standin_case():
    public = set(F.__all__)
    missing = sorted(public - set(OP_CASES) - set(EXEMPT))
    assert not missing, f"ops without a stand-in case in OP_CASES (or a reason in EXEMPT): {missing}"
    stale = sorted((set(OP_CASES) | set(EXEMPT)) - public)
    assert not stale, f"OP_CASES/EXEMPT name ops that functional.__all__ no longer exports: {stale}"
    assert not set(OP_CASES) & set(EXEMPT)


def _run_op(name, backend_name):
    """Outputs and input gradients (host copies) of OP_CASES[name] on one backend, and how
    often ``F.<name>`` itself was called."""
    case = OP_CASES[name]
    xp = B.array_module(backend_name)
    calls = []
    original = getattr(F, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with B.backend(backend_name):
        mb.manual_seed(0)                                  # dropout draws the same numbers on both
        xs = [mb.Tensor(_on(xp, a.copy()), requires_grad=True) for a in case.inputs]
        setattr(F, name, counted)
        try:
            outs = case.call(lambda a: _on(xp, a), *xs)
        finally:
            setattr(F, name, original)
        outs = outs if isinstance(outs, tuple) else (outs,)
        _assert_on(xp, [o.data for o in outs], f"{name}: output")
        rng = np.random.default_rng(7)
        total = None
        for o in outs:                                    # backpropagate sum(out * W), random W
            if o.requires_grad:
                w = mb.Tensor(_on(xp, rng.standard_normal(o.shape).astype(o.dtype)))
                term = (o * w).sum()
                total = term if total is None else total + term
        assert total is not None, f"{name}: no output requires grad"
        total.backward()
        grads = []
        for i, x in enumerate(xs):
            if x.grad is None:
                grads.append(None)
                continue
            _assert_on(xp, [x.grad.data], f"{name}: gradient of input")
            grads.append(mb.to_numpy(x.grad.data))
    return [mb.to_numpy(o.data) for o in outs], grads, len(calls)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_op_forward_and_backward_on_the_device_match_numpy(name, device):
    if name == "dropout" and device == "cupy":
        pytest.skip("on a GPU dropout draws from CuPy's own generator (its statistics: tests/test_ops.py)")
    host_out, host_grad, n_host = _run_op(name, "numpy")
    dev_out, dev_grad, n_dev = _run_op(name, device)
    assert n_host >= 1 and n_dev == n_host, f"the case for {name!r} does not call F.{name}"
    assert any(g is not None for g in host_grad), f"{name}: no input received a gradient"
    rtol, atol = _tol(device)
    for i, (a, b) in enumerate(zip(dev_out, host_out)):
        _close(a, b, rtol, atol, f"{name}: output {i}")
    for i, (a, b) in enumerate(zip(dev_grad, host_grad)):
        assert (a is None) == (b is None), f"{name}: input {i} has a gradient on one backend only"
        if a is not None:
            _close(a, b, rtol, atol, f"{name}: gradient of input {i}")


def test_index_like_arguments_may_come_from_the_host():
    """Ids, targets, masks and indices given as host arrays or lists are copied to the device
    for you (data operands are not: mixing those raises, naming the op)."""
    x = _r(3, 4)
    with B.backend("standin"):
        d = mb.tensor(x, requires_grad=True, device="cuda")
        tgt = np.array([1, -100, 3])
        outs = [F.cross_entropy(d, tgt), F.cross_entropy(d, list(tgt)), F.nll_loss(F.log_softmax(d, -1), tgt),
                F.nll_loss(F.log_softmax(d, -1), list(tgt)), F.masked_fill(d, np.eye(3, 4, dtype=bool), 0.0),
                F.where(np.eye(3, 4, dtype=bool), d, 0.0), d[np.array([0, 2])], d[[2, 1]],
                F.embedding(np.array([0, 2]), d), F.scaled_dot_product_attention(
                    d[None], d[None], d[None], attn_mask=np.tril(np.ones((3, 3), bool)))]
        _assert_on(standin, [o.data for o in outs], "output")
        sum(o.sum() for o in outs).backward()
        assert B.get_array_module(d.grad.data) is standin
        with pytest.raises(TypeError, match=r"^MSELoss: cannot mix host \(NumPy\) and device arrays"):
            F.mse_loss(d, np.zeros((3, 4)))


def test_nll_loss_accepts_a_host_target_tensor_like_cross_entropy():
    x = _r(3, 4)
    with B.backend("standin"):
        d = F.log_softmax(mb.tensor(x, requires_grad=True, device="cuda"), -1)
        host_target = mb.tensor(np.array([1, -100, 3]), device="cpu")
        want = F.cross_entropy(mb.tensor(x, device="cuda"), host_target).item()    # accepted
        got = F.nll_loss(d, host_target).item()
    assert got == pytest.approx(want, rel=1e-12)


# ============================================================================ layers and models: training steps

def _two_steps(model, loss_fn, device, make_opt, clip=1.0):
    """Two training steps of a deep copy of ``model`` on ``device`` ("numpy" = the host):
    returns the losses, the gradients of the last step, and the updated weights (host copies)."""
    model = copy.deepcopy(model)
    with B.backend(device):
        dev = "cpu" if device == "numpy" else "cuda"
        xp = B.array_module(device)
        model.to(dev)
        opt = make_opt(model.parameters())
        losses = []
        mb.manual_seed(1)                                  # the same dropout masks on every backend
        for _ in range(2):
            opt.zero_grad()
            loss = loss_fn(model, dev)
            loss.backward()
            if clip:
                clip_grad_norm_(model.parameters(), clip)
            grads = {k: p.grad for k, p in _named_params(model)}
            opt.step()
            losses.append(loss.item())
        arrays = [p.data for p in model.parameters()] + [g.data for g in grads.values() if g is not None]
        arrays += [v for s in opt.state.values() for v in s.values() if hasattr(v, "shape")]
        _assert_on(xp, arrays, "parameter, gradient or optimizer buffer")
        assert sum(g is not None for g in grads.values()) > 0
        weights = {k: mb.to_numpy(v) for k, v in model.state_dict().items()}
        grads = {k: None if g is None else mb.to_numpy(g.data) for k, g in grads.items()}
    return losses, grads, weights


def _named_params(model):
    seen = set()
    for mname, m in model.named_modules():
        for k, p in m._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                yield (f"{mname}.{k}" if mname else k), p


def _no_dropout(model):
    """Dropout probabilities set to 0 (on a GPU dropout draws from CuPy's own generator, so
    its masks differ from the host's)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(m, (nn.MultiheadAttention, nn.LSTM)):
            m.dropout = 0.0
    return model


def _check_steps(model, loss_fn, device, make_opt=lambda p: Adam(p, lr=1e-2), clip=1.0, gpu_safe=True):
    if device == "cupy":
        _no_dropout(model)
        if gpu_safe:
            # Adam divides by sqrt(v): a gradient that is 0 up to rounding (1e-17 with either
            # sign on different hardware) would become a full step.  SGD keeps rounding small.
            make_opt = lambda p: SGD(p, lr=0.05, momentum=0.9)
    before = {k: np.array(mb.to_numpy(v), copy=True) for k, v in model.state_dict().items()}
    host = _two_steps(model, loss_fn, "numpy", make_opt, clip)
    dev = _two_steps(model, loss_fn, device, make_opt, clip)
    rtol, atol = _tol(device)
    np.testing.assert_allclose(dev[0], host[0], rtol=rtol, atol=atol, err_msg="losses")
    assert set(dev[1]) == set(host[1])
    for k in host[1]:
        assert (dev[1][k] is None) == (host[1][k] is None), f"{k}: a gradient on one backend only"
        if host[1][k] is not None:
            _close(dev[1][k], host[1][k], rtol, atol, f"gradient of {k}")
    moved = 0
    for k in host[2]:
        _close(dev[2][k], host[2][k], rtol, atol, f"updated {k}")
        moved += not np.array_equal(host[2][k], before[k])
    assert moved > 0, "the optimizer changed no weight: the step case tests nothing"
    return host, dev


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _t(a, dev, rg=False):
    return mb.tensor(a, device=dev, requires_grad=rg)


X5 = _x(5, 2, 8)                      # (time, batch, features)
PAD = np.array([[False] * 5, [False, False, False, True, True]])


def _sq(y):
    return (y * y).mean()


#: nn layer -> (build, loss(model, dev)).  Every Module subclass that nn exports has one.
LAYER_CASES = {
    "Linear": (lambda: nn.Linear(8, 3), lambda m, d: _sq(m(_t(X5, d)))),
    "Identity": (lambda: nn.Sequential(nn.Linear(8, 3), nn.Identity()), lambda m, d: _sq(m(_t(X5, d)))),
    "Embedding": (lambda: nn.Embedding(10, 4, padding_idx=0),
                  lambda m, d: _sq(m(_t(np.array([[0, 3, 3], [9, 1, 0]]), d)))),
    "LayerNorm": (lambda: nn.LayerNorm(8), lambda m, d: (m(_t(X5, d)) ** 3).mean()),
    "Dropout": (lambda: nn.Sequential(nn.Dropout(0.3), nn.Linear(8, 3)), lambda m, d: _sq(m(_t(X5, d)))),
    "ReLU": (lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), lambda m, d: _sq(m(_t(X5, d)))),
    "GELU": (lambda: nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(approximate="tanh")),
             lambda m, d: _sq(m(_t(X5, d)))),
    "Tanh": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Tanh()), lambda m, d: _sq(m(_t(X5, d)) - 0.5)),
    "Sigmoid": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Sigmoid()), lambda m, d: _sq(m(_t(X5, d)))),
    "Softmax": (lambda: nn.Sequential(nn.Linear(8, 4), nn.Softmax(-1)), lambda m, d: _sq(m(_t(X5, d)))),
    "LogSoftmax": (lambda: nn.Sequential(nn.Linear(8, 4), nn.LogSoftmax(dim=-1)),
                   lambda m, d: -m(_t(X5, d))[..., 0].mean()),
    "Sequential": (lambda: nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2)), lambda m, d: _sq(m(_t(X5, d)))),
    "ModuleList": (lambda: nn.ModuleList([nn.Linear(8, 4), nn.Linear(4, 2)]),
                   lambda m, d: _sq(m[1](m[0](_t(X5, d))))),
    "ModuleDict": (lambda: nn.ModuleDict({"a": nn.Linear(8, 4), "b": nn.Linear(4, 2)}),
                   lambda m, d: _sq(m["b"](m["a"](_t(X5, d))))),
    "MultiheadAttention": (lambda: nn.ModuleList([nn.MultiheadAttention(8, 2, dropout=0.2),
                                                   nn.MultiheadAttention(8, 2, kdim=6, vdim=4, batch_first=True)]),
                           lambda m, d: _sq(m[0](_t(X5, d), _t(X5, d), _t(X5, d), key_padding_mask=_t(PAD, d),
                                                 attn_mask=nn.generate_square_subsequent_mask(5, dtype=np.float64))[0])
                           + _sq(m[1](_t(X5[:3].transpose(1, 0, 2), d), _t(_x(2, 5, 6, seed=1), d),
                                      _t(_x(2, 5, 4, seed=2), d), need_weights=False)[0])),
    "LSTMCell": (lambda: nn.LSTMCell(8, 3), lambda m, d: _sq(m(_t(X5[0], d))[0])),
    "LSTM": (lambda: nn.LSTM(8, 3, num_layers=2, bidirectional=True, dropout=0.2),
             lambda m, d: _sq(m(_t(X5, d), lengths=[5, 3])[0])),
    "SinusoidalPositionalEncoding": (lambda: nn.Sequential(nn.Linear(8, 8),
                                                           nn.SinusoidalPositionalEncoding(8, max_len=10, dropout=0.1)),
                                     lambda m, d: _sq(m(_t(X5, d)))),
    "LearnedPositionalEmbedding": (lambda: nn.Sequential(nn.Linear(8, 8), nn.LearnedPositionalEmbedding(10, 8)),
                                   lambda m, d: _sq(m(_t(X5, d)))),
    "TransformerEncoderLayer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, activation="gelu",
                                                                   norm_first=True),
                                lambda m, d: _sq(m(_t(X5, d), src_key_padding_mask=_t(PAD, d)))),
    "TransformerEncoder": (lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1), 2,
                                                         norm=nn.LayerNorm(8)),
                           lambda m, d: _sq(m(_t(X5, d), mask=nn.generate_square_subsequent_mask(5, dtype=np.float64)))),
    "TransformerDecoderLayer": (lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1, batch_first=True),
                                lambda m, d: _sq(m(_t(X5[:3].transpose(1, 0, 2), d), _t(X5.transpose(1, 0, 2), d),
                                                   tgt_is_causal=True, memory_key_padding_mask=_t(PAD, d)))),
    "TransformerDecoder": (lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1), 2,
                                                         norm=nn.LayerNorm(8)),
                           lambda m, d: _sq(m(_t(X5[:3], d), _t(X5, d),
                                              tgt_mask=nn.generate_square_subsequent_mask(3, dtype=np.float64)))),
}


def test_every_nn_layer_has_a_training_step_case():
    layers = sorted(n for n in dir(nn) if isinstance(getattr(nn, n), type)
                    and issubclass(getattr(nn, n), nn.Module) and getattr(nn, n) is not nn.Module)
    missing = sorted(set(layers) - set(LAYER_CASES))
    assert not missing, f"nn layers without a stand-in training-step case in LAYER_CASES: {missing}"
    assert not set(LAYER_CASES) - set(layers), "LAYER_CASES names a layer nn no longer exports"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_training_step_on_the_device_matches_numpy(name, device):
    build, loss = LAYER_CASES[name]
    mb.manual_seed(0)
    _check_steps(build().double(), loss, device)


def _bilstm_pair():
    m = nn.ModuleDict({"enc": BiLSTMEncoder(8, 3), "dec": BiLSTMDecoder(3, 4)})
    return m


def _bilstm_loss(m, d):
    out, h = m["enc"](_t(X5, d), lengths=[5, 3])
    y, _ = m["dec"](out, h, lengths=[5, 3])
    return _sq(y)


def _bert_config(**kw):
    kw = {"vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 32, "max_position_embeddings": 12, "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, **kw}
    return BertConfig(**kw)


IDS = np.array([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]])
ATT = (IDS != 0).astype(np.int64)
MLM_LABELS = np.where(np.isin(np.arange(6), [2]) | (IDS == 8), IDS, -100)


def _on_dev(a, d):
    """Model inputs as device tensors (the strict form); the models also accept host arrays."""
    return mb.tensor(a, device=d)


#: model -> (build, loss(model, dev)).
MODEL_CASES = {
    "BiLSTMEncoder+BiLSTMDecoder": (_bilstm_pair, _bilstm_loss),
    "BiTransformerEncoder-full": (lambda: BiTransformerEncoder(8, 2, 1, dim_feedforward=16, dropout=0.1),
                                  lambda m, d: _sq(m(_t(X5, d), src_key_padding_mask=_t(PAD, d)))),
    "BiTransformerEncoder-two_tower": (lambda: BiTransformerEncoder(8, 2, 1, mode="two_tower", dim_feedforward=16,
                                                                    dropout=0.1),
                                       lambda m, d: _sq(m(_t(X5, d), src_key_padding_mask=_t(PAD, d)))),
    "BiTransformerDecoder": (lambda: BiTransformerDecoder(8, 2, 1, dim_feedforward=16, dropout=0.1),
                             lambda m, d: _sq(m(_t(X5[:3], d), _t(X5, d), memory_key_padding_mask=_t(PAD, d)))),
    "Seq2SeqBiTransformer": (lambda: Seq2SeqBiTransformer(9, 9, d_model=8, nhead=2, num_encoder_layers=1,
                                                          num_decoder_layers=1, dim_feedforward=16, dropout=0.1),
                             lambda m, d: sum(m([[3, 4, 5], [6, 7]], [[5, 4], [8, 3, 3]]))),
    "BertModel-gelu": (lambda: BertModel(_bert_config()),
                       lambda m, d: _sq(m(_on_dev(IDS, d), _on_dev(ATT, d))[0]) + m(IDS, ATT)[1].sum()),
    "BertModel-gelu_new-causal": (lambda: BertModel(_bert_config(hidden_act="gelu_new", causal=True)),
                                  lambda m, d: _sq(m(_on_dev(IDS, d), _on_dev(ATT, d),
                                                     token_type_ids=_on_dev(np.ones_like(IDS), d))[0])),
    "BertModel-relu-unfused": (lambda: _unfused(BertModel(_bert_config(hidden_act="relu"))),
                               lambda m, d: _sq(m(_on_dev(IDS, d), _on_dev(ATT, d))[0])),
    "BertForMaskedLM": (lambda: BertForMaskedLM(_bert_config()),
                        lambda m, d: m(_on_dev(IDS, d), _on_dev(ATT, d), labels=_on_dev(MLM_LABELS, d))[0]),
    "BertForMaskedLM-masked_positions": (
        lambda: BertForMaskedLM(_bert_config()),
        lambda m, d: m(_on_dev(IDS, d), _on_dev(ATT, d), labels=_on_dev(MLM_LABELS, d),
                       masked_positions=_on_dev(MLM_LABELS != -100, d))[0]),
    "BertForMaskedLM-causal-next_token_labels": (
        lambda: BertForMaskedLM(_bert_config(causal=True)),
        lambda m, d: m(IDS, ATT, labels=next_token_labels(_on_dev(IDS, d), _on_dev(ATT, d)))[0]),
    "BertForSequenceClassification-pooler": (
        lambda: BertForSequenceClassification(_bert_config(), num_labels=3),
        lambda m, d: m(_on_dev(IDS, d), _on_dev(ATT, d), labels=_on_dev(np.array([0, 2]), d))[0]),
    "BertForSequenceClassification-cls-regression": (
        lambda: BertForSequenceClassification(_bert_config(), num_labels=1, pooling="cls"),
        lambda m, d: m(IDS, ATT, labels=np.array([0.5, -1.0]))[0]),
    "BertForSequenceClassification-multilabel": (
        lambda: BertForSequenceClassification(_bert_config(), num_labels=3),
        lambda m, d: m(IDS, ATT, labels=_on_dev(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), d))[0]),
}


def _unfused(model):
    for layer in model.encoder.layer:
        layer.fused_ffn = False                 # the feed-forward block as primitive ops
    return model


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_training_step_on_the_device_matches_numpy(name, device):
    build, loss = MODEL_CASES[name]
    mb.manual_seed(0)
    _check_steps(build().double(), loss, device, make_opt=lambda p: AdamW(p, lr=1e-2, weight_decay=0.1))


def test_bert_float32_step_on_the_standin_matches_numpy_to_float32_rounding():
    """In float32 on the host the exact GELU runs a float32 rational approximation of erf
    (within 5e-7 of SciPy's erf, which the device path uses), so float32 results agree to
    rounding, not bit for bit."""
    mb.manual_seed(0)
    model = BertForMaskedLM(_bert_config())
    loss = MODEL_CASES["BertForMaskedLM-masked_positions"][1]
    host = _two_steps(model, loss, "numpy", lambda p: AdamW(p, lr=1e-3))
    dev = _two_steps(model, loss, "standin", lambda p: AdamW(p, lr=1e-3))
    np.testing.assert_allclose(dev[0], host[0], rtol=1e-6)
    for k in host[2]:
        assert host[2][k].dtype == np.float32
        np.testing.assert_allclose(dev[2][k], host[2][k], rtol=1e-5, atol=1e-6, err_msg=k)


# ============================================================================ optimizers, schedules, clipping

OPTIMIZERS = {
    "SGD": lambda p: SGD(p, lr=0.1),
    "SGD-momentum-weight_decay": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "SGD-nesterov": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "SGD-dampening": lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.5),
    "Adam-L2": lambda p: Adam(p, lr=0.01, weight_decay=0.1),
    "Adam-amsgrad": lambda p: Adam(p, lr=0.01, amsgrad=True),
    "AdamW-amsgrad": lambda p: AdamW(p, lr=0.01, amsgrad=True),
    "AdamW-groups": lambda p: AdamW([{"params": list(p)[:1], "weight_decay": 0.0}, {"params": list(p)[1:]}], lr=0.01),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_updates_on_the_device_match_numpy(name, device):
    mb.manual_seed(0)
    build, loss = LAYER_CASES["Linear"]
    _check_steps(build().double(), loss, device, make_opt=lambda p: OPTIMIZERS[name](list(p)), clip=None,
                 gpu_safe=False)


@pytest.mark.parametrize("device", DEVICES)
def test_schedules_and_clipping_on_the_device(device):
    def run(dev_name):
        mb.manual_seed(0)
        model = nn.Linear(8, 3).double()
        with B.backend(dev_name):
            dev = "cpu" if dev_name == "numpy" else "cuda"
            model.to(dev)
            opt = SGD(model.parameters(), lr=0.5, momentum=0.5)
            scheds = [LinearWarmupDecay(opt, 2, 6)]
            out = []
            for step in range(5):
                opt.zero_grad()
                (_sq(model(_t(X5 * (step + 1), dev))) * 50).backward()
                norm_inf = clip_grad_norm_(model.parameters(), 0.3, norm_type=math.inf)
                norm_2 = clip_grad_norm_(model.parameters(), 0.2)
                opt.step()
                for s in scheds:
                    s.step()
                out.append((norm_inf.item(), norm_2.item(), scheds[0].get_last_lr()[0]))
            assert all(B.get_array_module(p.data) is B.array_module(dev_name) for p in model.parameters())
            return out, [mb.to_numpy(p.data) for p in model.parameters()]
    host, dev = run("numpy"), run(device)
    rtol, atol = _tol(device)
    np.testing.assert_allclose(np.array(dev[0]), np.array(host[0]), rtol=rtol, atol=atol)
    assert host[0][0][0] > 0.3                       # the clipping was active
    for a, b in zip(dev[1], host[1]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    # the schedules themselves are host arithmetic: no arrays, the same on every backend
    opt = SGD([mb.tensor(np.zeros(2), requires_grad=True)], lr=1.0)
    assert [round(CosineAnnealingLR(opt, 4).lr_at(t, 1.0), 12) for t in (0, 2, 4)] == [1.0, 0.5, 0.0]
    assert WarmupCosine(opt, 2, 6).factor(1, 1.0) == 0.5


# ============================================================================ checkpoints

@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_from_the_device_resumes_exactly(device, tmp_path):
    """Save a device model and its optimizers mid-training, load both into fresh device
    objects, continue: the same as never stopping (and as the host run)."""
    mb.manual_seed(0)
    base = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3)).double()

    def loss_of(m, step, dev):
        return _sq(m(_t(X5 * (1 + 0.1 * step), dev)) - 0.3)

    def make_opts(m):
        ps = list(m.parameters())
        return [SGD(ps[:2], lr=0.1, momentum=0.9), Adam(ps[2:], lr=0.01, amsgrad=True)]

    def train(m, opts, steps, dev, start=0):
        for s in range(start, start + steps):
            for o in opts:
                o.zero_grad()
            loss_of(m, s, dev).backward()
            for o in opts:
                o.step()

    def straight(dev_name):
        m = copy.deepcopy(base)
        with B.backend(dev_name):
            dev = "cpu" if dev_name == "numpy" else "cuda"
            m.to(dev)
            train(m, make_opts(m), 4, dev)
        return {k: mb.to_numpy(v) for k, v in m.state_dict().items()}

    want = straight("numpy")
    xp = _xp(device)
    with B.backend(device):
        m = copy.deepcopy(base).to("cuda")
        opts = make_opts(m)
        train(m, opts, 2, "cuda")
        ckpt.save(tmp_path / "ck.safetensors", model=m.state_dict(), opts=[o.state_dict() for o in opts], step=2)
        ckpt.save_state_dict(tmp_path / "weights.safetensors", m.state_dict())
        s = ckpt.load(tmp_path / "ck.safetensors")
        assert s["step"] == 2 and all(type(v) is np.ndarray for v in s["model"].values())    # host arrays on disk
        m2 = copy.deepcopy(base).to("cuda")
        m2.load_state_dict(s["model"])
        opts2 = make_opts(m2)
        for o, st in zip(opts2, s["opts"]):
            o.load_state_dict(st)
        buffers = [v for o in opts2 for st in o.state.values() for v in st.values() if hasattr(v, "shape")]
        assert len(buffers) == 2 + 3 * 2                 # momentum x2; exp_avg, exp_avg_sq, max_exp_avg_sq x2
        _assert_on(xp, buffers + [p.data for p in m2.parameters()], "restored array")
        train(m2, opts2, 2, "cuda", start=2)
        got = {k: mb.to_numpy(v) for k, v in m2.state_dict().items()}
        plain = ckpt.load_state_dict(tmp_path / "weights.safetensors")
        assert set(plain) == set(got)
    rtol, atol = _tol(device)
    for k in want:
        _close(got[k], want[k], rtol, atol, k)
        assert not np.array_equal(plain[k], got[k])      # training went on after the save


# ============================================================================ decoding

@pytest.mark.parametrize("device", DEVICES)
def test_greedy_beam_and_rerank_with_device_step_functions(device):
    mb.manual_seed(0)
    model = Seq2SeqBiTransformer(9, 9, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=16, dropout=0.0).double().eval()
    table = _x(6, 9, seed=3) * 3                       # a toy "model": scores from the prefix length

    def toy_step(xp):
        def step(prefixes):
            rows = np.array([min(len(p), 5) for p in prefixes])
            logits = mb.Tensor(_on(xp, table[rows]))
            return F.log_softmax(logits, -1)          # a device Tensor: the search moves it to the host
        return step

    def run(dev_name):
        with B.backend(dev_name):
            xp = B.array_module(dev_name)
            model.to("cpu" if dev_name == "numpy" else "cuda")
            g = model.greedy([3, 4, 5], max_len=4)
            nbest = model.translate([3, 4, 5], beam_size=3, max_len=4)
            toy = beam_search(toy_step(xp), eos_id=2, beam_size=3, max_len=5)
            toy_g = greedy_search(toy_step(xp), eos_id=2, max_len=5)
            rr = rerank(toy, lambda hyps: mb.Tensor(_on(xp, np.array([float(len(h)) for h in hyps]))), weight=0.5)
        model.to("cpu")
        return [g] + nbest + toy + [toy_g] + rr

    host, dev = run("numpy"), run(device)
    assert len(host) == len(dev) and len(host) > 5
    rtol, atol = _tol(device)
    for h, d in zip(host, dev):
        assert h.tokens == d.tokens and h.finished == d.finished
        assert d.score == pytest.approx(h.score, rel=rtol, abs=atol)
        assert set(h.components) == set(d.components)


# ============================================================================ the Trainer

@pytest.fixture(scope="module")
def toy():
    from test_train import toy_data
    return toy_data(48, 1), toy_data(48, 2)


def _trainer_run(device, dtype, fn, tmp, dropout=0.1):
    from test_train import masker, tiny_config
    mb.manual_seed(0)
    model = fn["build"](tiny_config(dropout)).to(dtype)       # built on the host, then moved
    with B.backend(device):
        if device != "numpy":
            model.to("cuda")
        trainer = fn["run"](model, masker(), tmp)
        xp = B.array_module(device)
        _assert_on(xp, [p.data for p in model.parameters()], "parameter")
        for o in trainer.optimizers.values():
            _assert_on(xp, [v for s in o.state.values() for v in s.values() if hasattr(v, "shape")], "moment")
        weights = {k: mb.to_numpy(v) for k, v in model.state_dict().items()}
    return trainer, weights


def _trainer_cases(toy):
    train, val = toy
    common = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "progress": False}
    return {
        "alternating-early-stopping": {
            "build": lambda c: T.BertForBidirectionalFineTuning(c, pooling="pooler"),
            "run": lambda m, msk, d: T.bidirectional_fine_tune(m, train, val, msk, lam=0.3, schedule="alternating",
                                                               eval_every=2, patience=2, checkpoint_dir=d, **common)},
        "train_mlm": {
            "build": BertForMaskedLM,
            "run": lambda m, msk, d: T.train_mlm(m, train, msk, val, eval_every=3, **common)},
        "fine_tune": {
            "build": lambda c: BertForSequenceClassification(c, pooling="cls"),
            "run": lambda m, msk, d: T.fine_tune(m, train, val, **common)},
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["alternating-early-stopping", "train_mlm", "fine_tune"])
def test_trainer_loops_on_the_device_match_numpy(case, device, toy, tmp_path):
    fn = _trainer_cases(toy)[case]
    p = 0.0 if device == "cupy" else 0.1          # CuPy's dropout draws from its own generator
    host, hw = _trainer_run("numpy", np.float64, fn, str(tmp_path / "host"), p)
    dev, dw = _trainer_run(device, np.float64, fn, str(tmp_path / "dev"), p)
    assert host.global_step > 2 and len(host.history["eval_step"]) >= 2
    rtol, atol = _tol(device)
    assert dev.best["step"] == host.best["step"] and dev.stopped_early == host.stopped_early
    assert dev.history.keys() == host.history.keys()
    for k, v in host.history.items():
        w = dev.history[k]
        assert [x is None for x in w] == [x is None for x in v], k
        np.testing.assert_allclose([x for x in w if x is not None], [x for x in v if x is not None],
                                   rtol=rtol * 10, atol=atol * 10, err_msg=k)
    for k in hw:
        _close(dw[k], hw[k], rtol * 10, atol * 10, k)
    if case == "alternating-early-stopping":
        assert host.stopped_early and set(host.optimizers) == {"mlm", "task"}
        assert host.best["step"] < host.global_step     # the best model was restored from its checkpoint


def test_trainer_float32_on_the_standin_matches_numpy_to_rounding(toy, tmp_path):
    fn = _trainer_cases(toy)["alternating-early-stopping"]
    host, hw = _trainer_run("numpy", np.float32, fn, str(tmp_path / "host"))
    dev, dw = _trainer_run("standin", np.float32, fn, str(tmp_path / "dev"))
    np.testing.assert_allclose(dev.history["loss"], host.history["loss"], rtol=1e-5)
    assert dev.history["val_acc"] == host.history["val_acc"]
    for k in hw:
        np.testing.assert_allclose(dw[k], hw[k], rtol=1e-4, atol=1e-5, err_msg=k)
