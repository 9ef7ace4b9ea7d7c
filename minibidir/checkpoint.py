"""Checkpoints without pickle, written atomically.

A checkpoint is one safetensors file: every array (model parameters, optimizer moments) is
a named tensor, and everything else (step counters, hyper-parameters, the scheduler, the
random generator's state, user metadata) is JSON in the file's metadata.  Loading never
executes code from the file.  Saving writes a temporary file beside the target, flushes it
to disk and renames it over the target, so a crash mid-save leaves the previous checkpoint
intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import backend as B

__all__ = ["save", "load", "save_state_dict", "load_state_dict", "atomic_write"]

_FORMAT = "minibidir-checkpoint-1"


def atomic_write(path, write_fn):
    """Call ``write_fn(tmp_path)`` then rename the temporary file to ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _flatten(obj, prefix, arrays, tree):
    """Split a nested dict/list into arrays (by dotted key) and a JSON-able skeleton."""
    if isinstance(obj, dict):
        return {"__dict__": [[str(k), _flatten(v, f"{prefix}.{k}" if prefix else str(k), arrays, tree)]
                             for k, v in obj.items()],
                "__intkeys__": all(isinstance(k, int) for k in obj)}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten(v, f"{prefix}.{i}", arrays, tree) for i, v in enumerate(obj)],
                "__tuple__": isinstance(obj, tuple)}
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and getattr(obj, "ndim", 0) > 0:
        arrays[prefix] = np.ascontiguousarray(B.to_numpy(obj))
        return {"__array__": prefix}
    if isinstance(obj, np.generic) or (hasattr(obj, "shape") and getattr(obj, "ndim", 1) == 0):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a value of type {type(obj).__name__} at {prefix!r}")


def _unflatten(node, arrays):
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__dict__" in node:
            conv = int if node.get("__intkeys__") else str
            return {conv(k): _unflatten(v, arrays) for k, v in node["__dict__"]}
        if "__list__" in node:
            items = [_unflatten(v, arrays) for v in node["__list__"]]
            return tuple(items) if node.get("__tuple__") else items
    return node


def save(path, **parts):
    """Save named parts, e.g. ``save(path, model=model.state_dict(), optimizer=opt.state_dict(),
    scheduler=sched.state_dict(), step=1200)``; nested dicts/lists of arrays and plain
    values.  Atomic: the old file survives a crash mid-save."""
    from safetensors.numpy import save_file
    arrays = {}
    tree = _flatten(parts, "", arrays, None)
    meta = {"format": _FORMAT, "tree": json.dumps(tree)}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def load(path):
    """Read a checkpoint written by :func:`save` (host NumPy arrays; no code is executed)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = load_file(str(path))
    except Exception as e:        # a truncated or foreign file
        raise ValueError(f"checkpoint: {path} is not a readable safetensors checkpoint ({e})") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"checkpoint: {path} was not written by minibidir.checkpoint.save "
                         f"(format {meta.get('format')!r})")
    return _unflatten(json.loads(meta["tree"]), arrays)


def save_state_dict(path, state_dict):
    """A plain model state dict as a standard safetensors file (readable by other tools)."""
    from safetensors.numpy import save_file
    arrays = {k: np.ascontiguousarray(B.to_numpy(v)) for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp))


def load_state_dict(path):
    from safetensors.numpy import load_file
    return load_file(str(path))
