"""``Module`` and ``Parameter``: the containers layers are built from (PyTorch's API).

A Module owns Parameters (trainable tensors), buffers (non-trainable arrays such as a
positional-encoding table) and child Modules, registered simply by assigning them as
attributes.  ``state_dict()`` names every parameter and persistent buffer by its attribute
path (``encoder.layers.0.self_attn.in_proj_weight``), with PyTorch's names and layouts for
the equivalent modules, so a plain dict of arrays moves weights between minibidir and
PyTorch in either direction.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import backend as B
from ..autograd import Tensor

__all__ = ["Parameter", "Module", "ModuleList", "ModuleDict", "Sequential"]


class Parameter(Tensor):
    """A Tensor that a Module trains: ``requires_grad=True`` by default."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _to_array(value, like, key):
    """Accept a Tensor, a NumPy/CuPy array or a PyTorch tensor; return an array shaped and
    typed like ``like`` and on its device."""
    if isinstance(value, Tensor):
        value = value.data
    elif hasattr(value, "detach") and hasattr(value, "cpu"):        # a torch.Tensor
        value = value.detach().cpu().numpy()
    xp = B.get_array_module(like)
    if B.get_array_module(value) is not xp:
        value = B.to_numpy(value) if xp is np else xp.asarray(B.to_numpy(value))
    if tuple(value.shape) != tuple(like.shape):
        raise ValueError(f"load_state_dict: {key}: shape {tuple(value.shape)} in the checkpoint, "
                         f"{tuple(like.shape)} in the model")
    return value.astype(like.dtype, copy=True)


class Module:
    """Base class of every layer and model.  Subclasses set attributes in ``__init__`` and
    define ``forward``; calling the module calls ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration by assignment
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            for d in (params, self._buffers, self._modules):
                d.pop(name, None)
            self.__dict__.pop(name, None)
            (params if isinstance(value, Parameter) else self._modules)[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a parameter: assign a Parameter or None, "
                                f"not {type(value).__name__}")
            params[name] = None
        elif name in self._buffers:
            self._buffers[name] = value.data if isinstance(value, Tensor) else value
        elif name in self._modules and value is None:
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None, e.g. an absent bias) under ``name``."""
        if param is None:
            self.__dict__.pop(name, None)
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def register_buffer(self, name, value, persistent=True):
        """A non-trainable array that moves with the module and (if persistent) is saved."""
        if isinstance(value, Tensor):
            value = value.data
        self.__dict__.pop(name, None)
        self._buffers[name] = value
        if not persistent:
            self._non_persistent.add(name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- traversal
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix=""):
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, m = stack.pop(0)
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            stack[0:0] = [((f"{name}.{k}" if name else k), c) for k, c in m._modules.items() if c is not None]

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for k, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{k}" if mname else k), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for k, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{k}" if mname else k), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule (children first), then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data = p.grad.data * 0

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    # -- devices and dtypes
    def to(self, target):
        """``to("cuda")`` / ``to("cpu")`` moves every parameter and buffer in place;
        ``to(np.float64)`` casts the floating ones."""
        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                p.data = _move(p.data, target)
                if p.grad is not None:
                    p.grad.data = _move(p.grad.data, target)
            for k, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[k] = _move(b, target)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # -- state dicts
    def state_dict(self):
        """Every parameter and persistent buffer by dotted name, as arrays (PyTorch's names)."""
        out = OrderedDict()
        for mname, m in self.named_modules():
            for k, p in m._parameters.items():
                if p is not None:
                    out[f"{mname}.{k}" if mname else k] = p.data
            for k, b in m._buffers.items():
                if b is not None and k not in m._non_persistent:
                    out[f"{mname}.{k}" if mname else k] = b
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy, minibidir or PyTorch tensors) into the parameters and
        buffers.  With ``strict``, missing or unexpected keys raise; shape mismatches always do.
        Returns ``(missing_keys, unexpected_keys)``."""
        own = {}
        for mname, m in self.named_modules():
            for k, p in m._parameters.items():
                if p is not None:
                    own[f"{mname}.{k}" if mname else k] = (m, k, True)
            for k, b in m._buffers.items():
                if b is not None and k not in m._non_persistent:
                    own[f"{mname}.{k}" if mname else k] = (m, k, False)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        errors = []
        staged = []
        for key, (m, k, is_param) in own.items():
            if key not in state_dict:
                continue
            like = m._parameters[k].data if is_param else m._buffers[k]
            try:
                staged.append((m, k, is_param, _to_array(state_dict[key], like, key)))
            except ValueError as e:
                errors.append(str(e).replace("load_state_dict: ", ""))
        if errors:
            raise ValueError(f"load_state_dict for {type(self).__name__}: size mismatch: " + "; ".join(errors))
        for m, k, is_param, arr in staged:      # all or nothing
            if is_param:
                m._parameters[k].data = arr
            else:
                m._buffers[k] = arr
        return missing, unexpected

    # -- printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


def _move(arr, target):
    if isinstance(target, str):
        return B.to_device(arr, target)
    dt = np.dtype(target)
    return arr.astype(dt) if arr.dtype.kind == "f" and arr.dtype != dt else arr


class ModuleList(Module):
    """A list of modules, registered as children ``0``, ``1``, ... (PyTorch's naming)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self._modules[str(len(self._modules))] = module
        return self

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"ModuleList index {i} out of range ({n} modules)")
        return self._modules[str(i % n)]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for k, m in (modules or {}).items():
            self._modules[k] = m

    def __getitem__(self, k):
        return self._modules[k]

    def __setitem__(self, k, m):
        self._modules[k] = m

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()


class Sequential(ModuleList):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
