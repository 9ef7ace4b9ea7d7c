"""Pretrained BERT checkpoints in Hugging Face's layout, read with this project's own code.

A checkpoint directory holds ``config.json`` (the hyper-parameters), ``model.safetensors``
(named arrays; no pickle, no code) and ``vocab.txt`` (the WordPiece vocabulary, one token a
line, the line number being the id).  Loading is three steps:

1. the config becomes a :class:`~minibidir.models.bert.BertConfig` (activation, layer-norm
   epsilon, sizes, ...);
2. the arrays' names are mapped onto the model's: our module names mirror Hugging Face's,
   so most names are equal; older checkpoints name layer-norm parameters ``gamma``/``beta``,
   carry a ``bert.`` prefix (or lack one), store ``position_ids`` buffers, or keep only one
   of two tied arrays (the MLM decoder and the word embeddings);
3. the arrays are copied in (shapes checked), missing and unexpected names reported.

Sentence embeddings as sentence-transformers computes them (all-MiniLM-L6-v2: the encoder,
then mean pooling over the real tokens, then L2 normalisation; see the checkpoint's
``modules.json``) are :func:`mean_pooling` and :func:`normalize`, or
:class:`SentenceEncoder` which reads those steps from the directory.
"""
from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Tensor, no_grad
from .bert import BertConfig, BertModel, _as_array, _init_module, _init_state

__all__ = ["read_safetensors", "load_vocab", "convert_hf_state_dict", "load_hf_state_dict",
           "load_hf_bert", "mean_pooling", "normalize", "SentenceEncoder", "load_sentence_encoder"]


# ----------------------------------------------------------------------------- files

def _read_bf16_fallback(path, names):
    """Arrays NumPy has no dtype for (bfloat16), decoded from the safetensors header to float32.

    Format: 8 bytes little-endian header length N, N bytes of JSON {name: {dtype, shape,
    data_offsets}}, then the data; a bfloat16 is the top half of a float32.
    """
    out = {}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        for name in names:
            info = header[name]
            if info["dtype"] != "BF16":
                raise TypeError(f"read_safetensors: {path}: tensor {name!r} has dtype {info['dtype']}, "
                                f"which NumPy cannot represent")
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2")
            out[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
    return out


def read_safetensors(path):
    """All arrays of a ``.safetensors`` file (or of a sharded checkpoint's index
    ``model.safetensors.index.json``) as a dict of NumPy arrays.  bfloat16 becomes float32."""
    path = os.fspath(path)
    if path.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for shard in shards:
            out.update(read_safetensors(os.path.join(os.path.dirname(path), shard)))
        return out
    from safetensors import safe_open
    out, odd = {}, []
    with safe_open(path, framework="np") as f:
        for name in f.keys():
            try:
                out[name] = f.get_tensor(name)
            except TypeError:            # a dtype NumPy lacks (bfloat16)
                odd.append(name)
    if odd:
        out.update(_read_bf16_fallback(path, odd))
    return out


def _weights_file(directory):
    for name in ("model.safetensors", "model.safetensors.index.json"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    for name in ("pytorch_model.bin", "tf_model.h5"):
        if os.path.exists(os.path.join(directory, name)):
            raise FileNotFoundError(
                f"load_hf_bert: {directory} has {name} but no model.safetensors; only safetensors is read "
                f"(a pickle file can run code when loaded). Convert it once with the reference library "
                f"(model.save_pretrained(dir, safe_serialization=True)).")
    raise FileNotFoundError(f"load_hf_bert: no model.safetensors in {directory}")


def load_vocab(path):
    """``vocab.txt`` (a file or a checkpoint directory) as {token: id}, the id being the line number."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "vocab.txt")
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab.setdefault(line.rstrip("\n"), i)
    return vocab


# ----------------------------------------------------------------------------- names

#: Arrays Hugging Face stores that are not parameters here (constant index buffers).
_IGNORED = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")

#: Pairs of names for one tied array: (the name kept, its alias).
_TIED = (("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"),
         ("cls.predictions.bias", "cls.predictions.decoder.bias"))


def _rename(key):
    """Older names: LayerNorm.gamma/beta -> weight/bias."""
    if key.endswith(".gamma"):
        return key[:-6] + ".weight"
    if key.endswith(".beta"):
        return key[:-5] + ".bias"
    return key


def convert_hf_state_dict(state_dict, model):
    """Map a Hugging Face BERT state dict onto ``model``'s names.

    Returns ``(mapped, missing, unexpected)``: ``mapped`` holds the arrays under the model's
    names, ``missing`` the model's names nobody supplied, ``unexpected`` the checkpoint's names
    the model has no place for (e.g. a pretraining head when loading the bare encoder).
    Handles ``gamma``/``beta``, a ``bert.`` prefix present or absent, ``position_ids``
    buffers, and tied arrays stored once (or twice).
    """
    own = list(model.state_dict().keys())
    own_set = set(own)
    prefixed = any(k.startswith("bert.") for k in own)          # a head model: encoder under bert.
    mapped, unexpected = {}, []
    for key, value in state_dict.items():
        if _IGNORED.search(key):
            continue
        k = _rename(key)
        if prefixed and not k.startswith("bert.") and k.split(".", 1)[0] in ("embeddings", "encoder", "pooler"):
            k = "bert." + k
        elif not prefixed and k.startswith("bert."):
            k = k[5:]
        if k in own_set:
            mapped[k] = value
        else:
            unexpected.append(key)
    for keep, alias in _TIED:                                     # one array, two names
        if alias in own_set and keep in own_set:
            if keep in mapped and alias in mapped:
                a, b = B.to_numpy(_raw(mapped[keep])), B.to_numpy(_raw(mapped[alias]))
                if a.shape == b.shape and not np.array_equal(a, b):
                    warnings.warn(f"convert_hf_state_dict: {keep} and {alias} differ in the checkpoint but "
                                  f"are one tied array in the model; using {keep}", stacklevel=2)
                mapped[alias] = mapped[keep]
            elif keep in mapped:
                mapped[alias] = mapped[keep]
            elif alias in mapped:
                mapped[keep] = mapped[alias]
    missing = [k for k in own if k not in mapped]
    return mapped, missing, unexpected


def _raw(v):
    if isinstance(v, Tensor):
        return v.data
    if hasattr(v, "detach") and hasattr(v, "cpu"):            # a torch.Tensor
        return v.detach().cpu().numpy()
    return v


def load_hf_state_dict(model, state_dict, strict=True, source="checkpoint"):
    """Copy a Hugging Face BERT state dict into ``model`` (names mapped by
    :func:`convert_hf_state_dict`).  Missing names raise a KeyError with ``strict`` (otherwise a
    warning, and those parameters keep their values); unexpected names are returned (and
    warned about, except with ``strict=False``); a shape mismatch always raises a ValueError
    naming every offending array.  Returns ``(missing, unexpected)``."""
    mapped, missing, unexpected = convert_hf_state_dict(state_dict, model)
    who = type(model).__name__
    if missing:
        msg = (f"load_hf_state_dict: {source} lacks {len(missing)} of {who}'s arrays: {missing[:8]}"
               + (" ..." if len(missing) > 8 else ""))
        if strict:
            raise KeyError(msg + " (strict=False accepts this, e.g. for a new task head)")
        warnings.warn(msg + "; they keep their current (initial) values", stacklevel=2)
    try:
        model.load_state_dict(mapped, strict=False)
    except ValueError as e:
        cfg = model.config
        raise ValueError(f"load_hf_state_dict: {source} does not fit {who} (hidden_size={cfg.hidden_size}, "
                         f"num_hidden_layers={cfg.num_hidden_layers}, vocab_size={cfg.vocab_size}): {e}") from None
    if unexpected and strict:
        warnings.warn(f"load_hf_state_dict: {len(unexpected)} arrays of {source} were not used by {who}: "
                      f"{unexpected[:8]}" + (" ..." if len(unexpected) > 8 else ""), stacklevel=2)
    return missing, unexpected


def load_hf_bert(path, dtype=np.float32, model_class=None, strict=True, device=None, **model_kwargs):
    """Load a Hugging Face BERT checkpoint directory into a minibidir model.

    Reads ``config.json`` into a :class:`BertConfig` (so ``hidden_act`` and ``layer_norm_eps``
    come from it), builds ``model_class(config, **model_kwargs)`` (default
    :class:`BertModel`), copies ``model.safetensors`` in with :func:`load_hf_state_dict` and
    casts to ``dtype`` (and moves to ``device``, "cpu" or "cuda", when given).  Checks that
    ``vocab.txt``, when present, fits the vocabulary size.  Returns ``(model, config)``, the
    model in eval mode; ``model.loading_info`` lists the missing and unexpected names.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"load_hf_bert: {path} is not a directory")
    config = BertConfig.from_json(os.path.join(path, "config.json"))
    vocab_file = os.path.join(path, "vocab.txt")
    if os.path.exists(vocab_file):
        n_vocab = max(load_vocab(vocab_file).values(), default=-1) + 1      # lines = ids
        if n_vocab > config.vocab_size:
            raise ValueError(f"load_hf_bert: vocab.txt has {n_vocab} tokens but config.json says vocab_size = "
                             f"{config.vocab_size}; ids past {config.vocab_size - 1} would have no embedding")
    weights = _weights_file(path)
    state = read_safetensors(weights)
    model_class = model_class or BertModel
    prev = _init_state.enabled
    _init_state.enabled = False               # the checkpoint replaces the random draws
    try:
        model = model_class(config, **model_kwargs)
    finally:
        _init_state.enabled = prev
    model.to(np.dtype(dtype).type)
    missing, unexpected = load_hf_state_dict(model, state, strict=strict, source=weights)
    if missing:                               # strict=False: BERT's initialisation for what the file lacks
        names = set(missing)
        for mname, m in model.named_modules():
            owned = [f"{mname}.{k}" if mname else k for k, p in m._parameters.items() if p is not None]
            if owned and all(k in names for k in owned):
                _init_module(m, config.initializer_range)
    if device is not None:
        model.to(device)
    model.loading_info = {"missing_keys": missing, "unexpected_keys": unexpected}
    return model.eval(), config


# ----------------------------------------------------------------------------- sentence embeddings

def _float_tensor(x):
    if isinstance(x, Tensor):
        return x
    return Tensor(x)


def _mask_like(attention_mask, hidden):
    m = _as_array(attention_mask, B.get_array_module(hidden.data))
    if tuple(m.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"mean_pooling: attention_mask has shape {tuple(m.shape)}, expected (batch, length) = "
                         f"{tuple(hidden.shape[:2])}")
    return (m != 0).astype(hidden.dtype)


def mean_pooling(hidden, attention_mask):
    """Mean of the token vectors over the real (non-padding) tokens, as sentence-transformers'
    ``Pooling(pooling_mode_mean_tokens=True)``:

        s = Σ_t m_t h_t / max(Σ_t m_t, 1e-9)

    ``hidden`` (batch, length, dim), ``attention_mask`` (batch, length) 1/0.  Differentiable."""
    h = _float_tensor(hidden)
    m = _mask_like(attention_mask, h)
    total = F.sum(h * m[:, :, None], axis=1)
    count = B.get_array_module(m).maximum(m.sum(axis=1, keepdims=True), h.dtype.type(1e-9))
    return total / count


def normalize(x, eps=1e-12):
    """x / max(‖x‖₂, eps) along the last axis (``torch.nn.functional.normalize``; the
    ``Normalize`` module of sentence-transformers).  Differentiable."""
    x = _float_tensor(x)
    norm = F.sqrt(F.sum(x * x, axis=-1, keepdims=True))
    return x / F.maximum(norm, eps)


class SentenceEncoder:
    """Sentence embeddings from a BERT encoder: the encoder, a pooling ("mean" over real
    tokens, "cls", or "max"), optionally L2 normalisation.  ``encode(input_ids,
    attention_mask=None, token_type_ids=None)`` returns a (batch, dim) Tensor (under
    ``no_grad``; call :meth:`forward` to keep the graph)."""

    def __init__(self, model, pooling="mean", normalize=True):
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"SentenceEncoder: pooling must be 'mean', 'cls' or 'max', got {pooling!r}")
        self.model, self.pooling, self.normalize = model, pooling, normalize

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            shape = input_ids.shape if hasattr(input_ids, "shape") else np.shape(input_ids)
            attention_mask = np.ones(tuple(shape), dtype=np.int64)
        hidden, _ = self.model(input_ids, attention_mask, token_type_ids)
        if self.pooling == "mean":
            s = mean_pooling(hidden, attention_mask)
        elif self.pooling == "cls":
            s = hidden[:, 0]
        else:                                           # max over real tokens (padding -> -1e9)
            m = _mask_like(attention_mask, hidden)
            s = F.max(hidden + ((m - 1) * 1e9)[:, :, None], axis=1)
        return normalize(s) if self.normalize else s

    __call__ = forward

    def encode(self, input_ids, attention_mask=None, token_type_ids=None):
        with no_grad():
            return self.forward(input_ids, attention_mask, token_type_ids)


def load_sentence_encoder(path, dtype=np.float32, device=None):
    """A :class:`SentenceEncoder` for a sentence-transformers directory: reads
    ``modules.json`` (Transformer, then Pooling, then optionally Normalize) and the pooling
    module's ``config.json``, and the encoder with :func:`load_hf_bert`."""
    path = os.fspath(path)
    with open(os.path.join(path, "modules.json"), encoding="utf-8") as f:
        modules = json.load(f)
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or any(k not in ("Transformer", "Pooling", "Normalize")
                                                      for k in kinds):
        raise NotImplementedError(f"load_sentence_encoder: unsupported module pipeline {kinds} "
                                  f"(expected Transformer, Pooling[, Normalize])")
    pooling = "cls"
    for m in modules:
        if m["type"].endswith("Pooling"):
            with open(os.path.join(path, m["path"], "config.json"), encoding="utf-8") as f:
                pc = json.load(f)
            modes = [k for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                     if pc.get(f"pooling_mode_{k}")]
            table = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}
            if len(modes) != 1 or modes[0] not in table:
                raise NotImplementedError(f"load_sentence_encoder: pooling modes {modes} are not supported")
            pooling = table[modes[0]]
    model, _ = load_hf_bert(path, dtype=dtype, device=device)
    return SentenceEncoder(model, pooling=pooling, normalize="Normalize" in kinds)
