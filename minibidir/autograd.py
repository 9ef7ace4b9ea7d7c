"""Reverse-mode automatic differentiation: ``Tensor``, ``Function`` and ``backward``.

A :class:`Tensor` wraps an array (NumPy or CuPy) and remembers the :class:`Function` that
produced it.  A Function's ``forward`` computes on raw arrays and saves what its
``backward`` needs; ``backward`` turns the gradient of the output into gradients of the
inputs (the chain rule, one link at a time).  :meth:`Tensor.backward` visits the recorded
graph in reverse topological order, so each node's output gradient is complete before
the node passes it on.

Operators (``+``, ``@``, ``x.sum()``, ...) are defined as Functions in
:mod:`minibidir.functional`, which attaches them to ``Tensor`` when it is imported.
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

from . import backend as B

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
           "detect_anomaly", "sum_to_shape", "tensor", "zeros", "ones", "zeros_like",
           "ones_like", "full", "randn", "rand", "arange", "from_numpy"]


class _Config:
    grad_enabled = True
    anomaly = False


_config = _Config()


# ----------------------------------------------------------------------------- modes

class _GradMode(contextlib.ContextDecorator):
    """Context manager (and decorator) that switches graph recording on or off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._prev = []

    def __enter__(self):
        self._prev.append(_config.grad_enabled)
        _config.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _config.grad_enabled = self._prev.pop()
        return False


def no_grad():
    """``with no_grad():`` ops record no graph (evaluation, parameter updates)."""
    return _GradMode(False)


def enable_grad():
    """``with enable_grad():`` record the graph again inside a ``no_grad`` block."""
    return _GradMode(True)


def is_grad_enabled() -> bool:
    return _config.grad_enabled


@contextlib.contextmanager
def detect_anomaly():
    """Raise at the first op whose forward output or backward gradient holds NaN or inf.

    The error names the op, so a loss that turns NaN can be traced to its origin.
    Every op then checks its results, which costs time: use it to debug, not to train.
    """
    prev = _config.anomaly
    _config.anomaly = True
    try:
        yield
    finally:
        _config.anomaly = prev


def _check_finite(arrays, opname, where):
    for i, a in enumerate(arrays):
        if a is None or a.dtype.kind not in "fc":
            continue
        xp = B.get_array_module(a)
        if not bool(xp.isfinite(a).all()):
            n_nan = int(xp.isnan(a).sum())
            n_inf = int(a.size - xp.isfinite(a).sum() - n_nan)
            raise FloatingPointError(
                f"detect_anomaly: {opname}.{where} produced non-finite values in "
                f"{'output' if where == 'forward' else 'gradient of input'} {i} "
                f"(shape {tuple(a.shape)}: {n_nan} NaN, {n_inf} inf)")


# ----------------------------------------------------------------------------- broadcasting

def sum_to_shape(g, shape):
    """Sum a broadcast gradient back to ``shape``: the one place broadcasting is undone.

    If ``x`` of shape ``shape`` was broadcast to ``g.shape`` in the forward pass, each input
    element fed several outputs, so its gradient is the sum over the copies.
    """
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to_shape: gradient of shape {g.shape} cannot be reduced to {shape}")
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if g.shape != shape else g


# ----------------------------------------------------------------------------- Function

class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` on gradients.

    Subclasses implement ``forward(self, *arrays, **options)`` returning an array (or a
    tuple of arrays) and ``backward(self, *grad_outputs)`` returning one gradient per
    array input (``None`` where no gradient is needed).  Gradients may have the
    broadcast shape: the engine sums them back to each input's shape.
    ``self.needs_input_grad`` tells backward which inputs need a gradient.

    Call ``MyFunction.apply(*tensors, **options)``.
    """

    __slots__ = ("parents", "needs_input_grad", "saved", "_n_out", "_retained", "__dict__")

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, *grad_outputs):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on ``inputs`` (Tensors) and record the node if a gradient is needed."""
        fn = cls.__new__(cls)
        try:
            out = fn.forward(*[t.data for t in inputs], **options)
        except (ValueError, TypeError, IndexError) as e:
            raise _op_error(cls, e, inputs) from None
        if _config.anomaly:
            _check_finite(out if type(out) is tuple else (out,), cls.__name__, "forward")
        need = False
        if _config.grad_enabled:
            for t in inputs:
                if t.requires_grad:
                    need = True
                    break
        if type(out) is tuple:
            fn._n_out = len(out)
            if not need:
                return tuple(Tensor._make(o, False, None, 0) for o in out)
            fn.parents = inputs
            fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
            fn._retained = None
            return tuple(Tensor._make(o, o.dtype.kind in "fc", fn, i) for i, o in enumerate(out))
        if type(out) is not np.ndarray and isinstance(out, np.generic):
            out = np.asarray(out)       # NumPy full reductions give scalars; keep 0-d arrays
        if not need or out.dtype.kind not in "fc":
            return Tensor._make(out, False, None, 0)     # integer/bool results are not differentiable
        fn._n_out = 1
        fn.parents = inputs
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        fn._retained = None
        return Tensor._make(out, True, fn, 0)

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _op_error(cls, err, inputs):
    """Re-raise an array-library error with the op's name and the inputs' shapes and dtypes."""
    shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in inputs)
    msg = str(err)
    head = msg.split(":", 1)[0]
    if head and head == head.lower() and head.replace("_", "").isalpha() and "[inputs:" not in msg:
        return type(err)(f"{msg} [inputs: {shapes}]")     # already names the op
    if ("Implicit conversion" in msg or "host numpy.ndarray" in msg or "Unsupported type" in msg
            or "was called on a device array" in msg):
        msg = "cannot mix host (NumPy) and device arrays: " + msg
    return type(err)(f"{cls.__name__}: {msg} [inputs: {shapes}]")


class _ToDevice(Function):
    """y = x on another device;  dx = g moved back (so ``x.to("cuda")`` stays differentiable)."""
    def forward(self, x, device="cpu"):
        self.source = B.device_of(x)
        return B.to_device(x, device)

    def backward(self, g):
        return B.to_device(g, self.source)


class _Freed:
    """Marks a node whose saved arrays were released by a backward pass."""


# ----------------------------------------------------------------------------- Tensor

class Tensor:
    """An array with an optional gradient and a link to the op that produced it.

    ``Tensor(data, requires_grad=False, dtype=None)``: ``data`` is a NumPy/CuPy array or
    anything ``numpy.asarray`` accepts.  Python numbers become the default dtype
    (float32); arrays keep theirs.  Names follow PyTorch: ``requires_grad``, ``grad``,
    ``backward``, ``detach``, ``item``, ``numpy``, ``to``.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_ctx", "_out_idx", "name", "__weakref__")
    __array_priority__ = 1000       # ndarray (op) Tensor -> Tensor's reflected op

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = B.get_array_module(data)
        if xp is np and not isinstance(data, np.ndarray):
            default = B.get_default_dtype()
            arr = np.asarray(data)
            if dtype is None and arr.dtype.kind == "f":
                dtype = default
            data = np.asarray(arr, dtype=dtype) if dtype is not None else arr
            if B.get_backend() != "numpy" and device is None:
                device = "cuda"
        else:
            if dtype is not None and data.dtype != np.dtype(dtype):
                data = data.astype(dtype)
            if xp is np and B.get_backend() != "numpy" and device is None:
                device = "cuda"     # like PyTorch's default device: host arrays follow the backend
        if device is not None:
            data = B.to_device(data, device)
        self.data = data
        self.grad = None
        self._ctx = None
        self._out_idx = 0
        self.name = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _make(cls, data, requires_grad, ctx, idx):
        t = cls.__new__(cls)
        t.data = data
        t.grad = None
        t._requires_grad = requires_grad
        t._ctx = ctx
        t._out_idx = idx
        t.name = None
        return t

    # -- requires_grad with a clear error for integer tensors
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and self.data.dtype.kind not in "fc":
            raise TypeError(f"Tensor.requires_grad: only floating-point tensors can require "
                            f"gradients (got dtype {self.data.dtype}, shape {tuple(self.data.shape)})")
        if not value and self._ctx is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, value=True):
        self.requires_grad = value
        return self

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    # -- array attributes
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return B.device_of(self.data)

    def numel(self):
        return int(self.data.size)

    def dim(self):
        return self.data.ndim

    def __len__(self):
        return len(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"Tensor.item: only one-element tensors can be converted to "
                             f"Python scalars (got shape {self.shape})")
        return self.data.item()

    def numpy(self):
        """The data as a host NumPy array (a copy when it lives on a device)."""
        return B.to_numpy(self.data)

    def tolist(self):
        return self.numpy().tolist()

    def detach(self):
        """A new leaf sharing the data, cut from the graph."""
        return Tensor._make(self.data, False, None, 0)

    def to(self, target):
        """``to("cuda")`` / ``to("cpu")`` moves the data; ``to(float64)`` casts (differentiably)."""
        if isinstance(target, str):
            kind = str(target).split(":")[0]
            if kind not in ("cpu", "cuda"):
                raise ValueError(f"to: unknown device {target!r}; expected 'cpu' or 'cuda'")
            if B.device_of(self.data) == kind:
                return self
            return _ToDevice.apply(self, device=str(target))
        return self.astype(target)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (for inspection)."""
        if self._ctx is None:
            return
        ctx = self._ctx
        if ctx._retained is None:
            ctx._retained = []
        ctx._retained.append((self._out_idx, weakref.ref(self)))

    def zero_grad(self):
        self.grad = None

    def __repr__(self):
        extra = ""
        if self._ctx is not None:
            extra = f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self._requires_grad:
            extra = ", requires_grad=True"
        dev = "" if self.device == "cpu" else ", device='cuda'"
        body = np.array2string(self.numpy(), precision=4, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of a Tensor with {self.data.size} elements is ambiguous")
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu":
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__

    # -- backpropagation
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the gradient of some scalar with respect to ``self``; it may be left out
        only when ``self`` has one element.  The graph's saved arrays are released
        afterwards unless ``retain_graph=True``.
        """
        if not self._requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn "
                               "(did you forget requires_grad=True, or compute it under no_grad?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for scalar "
                                   f"outputs (got shape {self.shape}); pass grad=")
            xp = B.get_array_module(self.data)
            g = xp.ones(self.data.shape, dtype=self.data.dtype)
        else:
            g = grad.data if isinstance(grad, Tensor) else grad
            xp = B.get_array_module(self.data)
            if B.get_array_module(g) is not xp:
                g = xp.asarray(B.to_numpy(g) if xp is not np else g)
            if tuple(g.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(g.shape)} but the tensor has "
                                 f"shape {self.shape}")
            g = g.astype(self.data.dtype, copy=False)
        if self._ctx is None:
            _accumulate_leaf(self, g)
            return
        _run_backward(self._ctx, self._out_idx, g, retain_graph)


def _accumulate_leaf(t, g):
    if isinstance(g, np.generic):
        g = np.asarray(g)       # NumPy ops on 0-d arrays return scalars
    # Out of place: ``g`` may be shared with another tensor's gradient (``a + b`` passes the
    # same array to both), so it must never be modified in place afterwards.
    if t.grad is None:
        if not getattr(getattr(g, "flags", None), "writeable", True):
            g = g.copy()        # a broadcast view (from sum/mean/expand): give the leaf its own array
        t.grad = Tensor._make(g, False, None, 0)
    else:
        total = t.grad.data + g
        t.grad.data = np.asarray(total) if isinstance(total, np.generic) else total


def _topological_order(root):
    """Function nodes reachable from ``root``, each after all nodes that consume its output.

    Iterative depth-first search (no recursion: a 20,000-op chain must work).  A node is
    appended only when everything it depends on has been appended (post-order), so the
    reversed list puts every consumer before its producers.  A node is marked done when it is
    *finished*, not when first pushed: marking at push time lets a node pushed early by one
    consumer be finished before another consumer reached later (``c + f(c)``), and its
    gradient would be passed on incomplete.
    """
    order = []
    done = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if node not in done:
                done.add(node)
                order.append(node)
            continue
        if node in done:
            continue
        parents = node.parents
        if parents is _Freed:
            raise RuntimeError(
                f"backward: trying to backward through the graph a second time ({type(node).__name__} "
                f"already released its saved values); pass retain_graph=True to the first backward")
        stack.append((node, True))
        for p in parents:
            c = p._ctx
            if c is not None and c not in done:
                stack.append((c, False))
    order.reverse()     # consumers first
    return order


def _run_backward(root, idx, g, retain_graph):
    order = _topological_order(root)
    pending = {root: [None] * root._n_out}
    pending[root][idx] = g
    anomaly = _config.anomaly
    with no_grad():
        for node in order:
            gouts = pending.pop(node, None)
            if gouts is None:
                continue            # nothing flowed into this node
            if node._retained:
                for i, ref in node._retained:
                    t = ref()
                    if t is not None and gouts[i] is not None:
                        t.grad = Tensor._make(gouts[i], False, None, 0)
            gins = node.backward(*gouts) if node._n_out > 1 else node.backward(gouts[0])
            if type(gins) is not tuple:
                gins = (gins,)
            if anomaly:
                _check_finite(gins, type(node).__name__, "backward")
            for t, gi in zip(node.parents, gins):
                if gi is None or not t._requires_grad:
                    continue
                if gi.shape != t.data.shape:
                    gi = sum_to_shape(gi, t.data.shape)
                ctx = t._ctx
                if ctx is None:
                    _accumulate_leaf(t, gi)
                else:
                    slot = pending.get(ctx)
                    if slot is None:
                        slot = pending[ctx] = [None] * ctx._n_out
                    j = t._out_idx
                    slot[j] = gi if slot[j] is None else slot[j] + gi
            if not retain_graph:
                node.parents = _Freed
                node.saved = None
                node.__dict__.clear()


# ----------------------------------------------------------------------------- creation

def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor holding a copy of ``data`` (``torch.tensor``; ``from_numpy`` shares)."""
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "copy") and hasattr(data, "shape"):
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing memory with a NumPy array (``torch.from_numpy``)."""
    return Tensor(np.asarray(array), device="cpu")


def _creation_xp(device):
    if device is None:
        return B.array_module()
    return np if device == "cpu" else B._device_module()


def _dt(dtype):
    return np.dtype(dtype or B.get_default_dtype())


def zeros(*shape, dtype=None, requires_grad=False, device=None):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(_creation_xp(device).zeros(shape, dtype=_dt(dtype)), requires_grad=requires_grad, device=device)


def ones(*shape, dtype=None, requires_grad=False, device=None):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(_creation_xp(device).ones(shape, dtype=_dt(dtype)), requires_grad=requires_grad, device=device)


def full(shape, value, dtype=None, requires_grad=False, device=None):
    return Tensor(_creation_xp(device).full(shape, value, dtype=_dt(dtype)), requires_grad=requires_grad, device=device)


def zeros_like(t, dtype=None, requires_grad=False):
    xp = B.get_array_module(t.data)
    return Tensor(xp.zeros(t.data.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    xp = B.get_array_module(t.data)
    return Tensor(xp.ones(t.data.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def randn(*shape, dtype=None, requires_grad=False, device=None):
    """Standard normal samples from the library's seeded generator (``manual_seed``)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    data = B.random_normal(_creation_xp(device), tuple(shape), _dt(dtype))
    return Tensor(data, requires_grad=requires_grad, device=device)


def rand(*shape, dtype=None, requires_grad=False, device=None):
    """Uniform samples in [0, 1) from the library's seeded generator."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    data = B.random_uniform(_creation_xp(device), tuple(shape), _dt(dtype))
    return Tensor(data, requires_grad=requires_grad, device=device)


def arange(*args, dtype=None, device=None):
    return Tensor(_creation_xp(device).arange(*args, dtype=dtype), device=device)
