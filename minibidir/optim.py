"""Optimizers, learning-rate schedules and gradient clipping (``torch.optim``'s names and update
rules, so the same hyper-parameters give the same trajectory).

Updates are in place on the parameter arrays (``p.data``) and on the optimizer's own state
buffers: NumPy runs elementwise ops on one thread, so fewer passes and fewer temporaries
matter.  Gradients are only read, never modified (a gradient array may be shared).
"""
from __future__ import annotations

import math

import numpy as np

from . import backend as B
from .autograd import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "LambdaLR", "LinearWarmupDecay",
           "CosineAnnealingLR", "WarmupCosine", "clip_grad_norm_"]


class Optimizer:
    """Holds parameter groups (each a dict with ``params`` and hyper-parameters) and
    per-parameter state.  ``state_dict()`` has PyTorch's structure: ``{"state": {index:
    {...}}, "param_groups": [{..., "params": [indices]}]}``."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        for g in groups:
            group = dict(self.defaults)
            group.update(g)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: every parameter must be a Tensor with "
                                     f"requires_grad=True")
            group.setdefault("initial_lr", group["lr"])
            self.param_groups.append(group)
        self.state = {}            # id(param) -> dict

    def _params(self):
        for g in self.param_groups:
            for p in g["params"]:
                yield g, p

    def zero_grad(self, set_to_none=True):
        for _, p in self._params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data = p.grad.data * 0

    def step(self):
        for group, p in self._params():
            if p.grad is not None:
                self._update(group, p, p.grad.data, self.state.setdefault(id(p), {}))

    def _update(self, group, p, g, state):
        raise NotImplementedError

    # -- serialisation (PyTorch's structure; arrays stay arrays)
    def state_dict(self):
        index = {}
        groups = []
        for g in self.param_groups:
            entry = {k: v for k, v in g.items() if k != "params"}
            entry["params"] = []
            for p in g["params"]:
                index[id(p)] = len(index)
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {index[pid]: dict(s) for pid, s in self.state.items() if pid in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the saved parameter groups "
                             f"{[len(g['params']) for g in groups]} do not match this optimizer's "
                             f"{[len(g['params']) for g in self.param_groups]}")
        by_index = {}
        for saved, group in zip(groups, self.param_groups):
            for i, p in zip(saved["params"], group["params"]):
                by_index[int(i)] = p
            for k, v in saved.items():
                if k != "params":
                    group[k] = v
        self.state = {}
        for i, s in state_dict["state"].items():
            p = by_index[int(i)]
            xp = B.get_array_module(p.data)
            moved = {}
            for k, v in s.items():
                if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    v = v if B.get_array_module(v) is xp else (xp.asarray(B.to_numpy(v)) if xp is not B.np
                                                                 else B.to_numpy(v))
                    v = v.astype(p.dtype, copy=True)
                elif hasattr(v, "item"):
                    v = v.item()
                moved[k] = v
            self.state[id(p)] = moved

    def __repr__(self):
        hp = ", ".join(f"{k}={v}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's form):

    g ← g + λ p;  b ← μ b + (1 − τ) g  (b = g at the first step);
    g ← g + μ b (Nesterov) or g ← b;  p ← p − η g.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, group, p, g, state):
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd:
            g = g + wd * p.data
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``:

    g ← g + λ p (L2 penalty);  m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
    p ← p − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε).
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: invalid hyper-parameters lr={lr}, betas={betas}, "
                             f"eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update(self, group, p, g, state):
        xp = B.get_array_module(p.data)
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if wd:
            if self.decoupled:
                p.data *= 1 - lr * wd
            else:
                g = g + wd * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        bc1 = 1 - b1 ** t
        bc2 = 1 - b2 ** t
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        denom = xp.sqrt(v)
        denom /= math.sqrt(bc2)
        denom += eps
        step = m / denom
        step *= lr / bc1
        p.data -= step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019): p ← p (1 − ηλ) before
    the Adam step, as ``torch.optim.AdamW`` (default λ = 0.01)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


# ----------------------------------------------------------------------------- schedules

class LRScheduler:
    """Sets each group's ``lr`` to ``initial_lr · factor(step)``; call ``step()`` after each
    optimizer step (PyTorch's convention)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def factor(self, step, base_lr):
        raise NotImplementedError

    def _apply(self):
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(self.last_epoch, base)

    def lr_at(self, step, base_lr):
        return base_lr * self.factor(step, base_lr)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self._apply()


class LambdaLR(LRScheduler):
    """lr = initial_lr · lr_lambda(step)."""

    def __init__(self, optimizer, lr_lambda):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def factor(self, step, base_lr):
        return self.lr_lambda(step)


class LinearWarmupDecay(LRScheduler):
    """Linear warm-up from 0 over ``num_warmup_steps``, then linear decay to 0 at
    ``num_training_steps`` (BERT's schedule):

    factor(t) = t / w for t < w, else max(0, (T − t) / (T − w)).
    """

    def __init__(self, optimizer, num_warmup_steps, num_training_steps):
        if num_training_steps <= 0 or not 0 <= num_warmup_steps <= num_training_steps:
            raise ValueError(f"LinearWarmupDecay: need 0 <= warmup ({num_warmup_steps}) <= total "
                             f"({num_training_steps}) and total > 0")
        self.w, self.total = num_warmup_steps, num_training_steps
        super().__init__(optimizer)

    def factor(self, t, base_lr):
        if t < self.w:
            return t / max(1, self.w)
        return max(0.0, (self.total - t) / max(1, self.total - self.w))


class CosineAnnealingLR(LRScheduler):
    """η_t = η_min + (η_0 − η_min)(1 + cos(π t / T_max)) / 2  (SGDR without restarts)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, t, base_lr):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class WarmupCosine(LRScheduler):
    """Linear warm-up over ``num_warmup_steps``, then cosine decay to ``min_factor · lr`` at
    ``num_training_steps``."""

    def __init__(self, optimizer, num_warmup_steps, num_training_steps, min_factor=0.0):
        if num_training_steps <= 0 or not 0 <= num_warmup_steps <= num_training_steps:
            raise ValueError("WarmupCosine: need 0 <= warmup <= total and total > 0")
        self.w, self.total, self.min_factor = num_warmup_steps, num_training_steps, min_factor
        super().__init__(optimizer)

    def factor(self, t, base_lr):
        if t < self.w:
            return t / max(1, self.w)
        progress = min(1.0, (t - self.w) / max(1, self.total - self.w))
        return self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * progress)) / 2


# ----------------------------------------------------------------------------- clipping

def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖ the norm of all gradients
    joined into one vector (as ``torch.nn.utils.clip_grad_norm_``).  Returns ‖g‖ as a Tensor."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(B.np.array(0.0))
    xp = B.get_array_module(grads[0].data)
    # One read-back to the host in all (not one per gradient): each is a device synchronisation.
    if norm_type == math.inf:
        total = float(xp.max(xp.stack([xp.abs(g.data).max() for g in grads])))
    else:
        total = float(sum((xp.abs(g.data) ** norm_type).sum(dtype=np.float64) for g in grads)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of the gradients is {total}")
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for g in grads:
            g.data = g.data * g.data.dtype.type(coef)     # out of place: gradient arrays may be shared
    return Tensor(B.np.array(total))          # float64, like the sum it was computed in
