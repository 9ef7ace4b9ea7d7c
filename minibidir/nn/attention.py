"""Multi-head attention with PyTorch's constructor, forward signature and state-dict layout.

    head_i = softmax(Q W_qⁱ (K W_kⁱ)ᵀ / √d_h + mask) V W_vⁱ,   out = concat(head_1..head_h) W_oᵀ + b_o

The h heads are not separate layers: one projection gives all heads' queries (and one
gives keys, one values; for self-attention a single product gives all three), which are
reshaped to (N, h, L, d_h) and handed to the fused scaled-dot-product-attention op.
"""
from __future__ import annotations

import numpy as np

from .. import backend as B
from .. import functional as F
from ..autograd import Tensor
from .module import Module, Parameter
from .linear import Linear, _empty
from . import init

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention``: same arguments, parameters and masks.

    Parameters (PyTorch's names): ``in_proj_weight`` (3E, E) holding W_q, W_k, W_v stacked,
    or ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim) when
    ``kdim``/``vdim`` differ from ``embed_dim``; ``in_proj_bias`` (3E,); ``out_proj`` a Linear
    (E, E).  Initialised as PyTorch: Xavier-uniform input projections, zero biases,
    Kaiming-uniform (a = √5) output projection.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights)``.
    Inputs are (L, N, E) (or (N, L, E) with ``batch_first``), or unbatched (L, E).

    Masks follow PyTorch's ``MultiheadAttention`` convention, where a boolean **True means
    "do not attend"** (the opposite of ``F.scaled_dot_product_attention``'s boolean mask):

    * ``key_padding_mask`` (N, S): True (or -inf when float) marks padded keys;
    * ``attn_mask`` (L, S) or (N·num_heads, L, S): True marks forbidden pairs; a float mask
      is added to the scores.

    ``is_causal=True`` is a hint that ``attn_mask`` is the causal mask (PyTorch's meaning);
    when no ``attn_mask`` is given, the causal mask is applied (PyTorch raises instead).
    A query whose keys are all masked gets output 0 and weights 0 (PyTorch gives NaN).
    Attention weights are dropped with probability ``dropout`` in training mode only, and the
    returned weights are those used (after dropout), averaged over heads unless
    ``average_attn_weights=False`` ((N, num_heads, L, S)).  Masks are constants: no gradient
    flows into a float mask.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got "
                             f"embed_dim={embed_dim}, num_heads={num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(_empty(3 * E, E, dtype=dtype))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(_empty(E, E, dtype=dtype))
            self.k_proj_weight = Parameter(_empty(E, self.kdim, dtype=dtype))
            self.v_proj_weight = Parameter(_empty(E, self.vdim, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(_empty(3 * E, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")

    # -- projections
    def _in_projection(self, query, key, value):
        """q, k, v = query W_qᵀ + b_q, key W_kᵀ + b_k, value W_vᵀ + b_v, with as few products as
        the sharing allows (self-attention: one product with the stacked (3E, E) weight)."""
        E = self.embed_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        if self._qkv_same_embed_dim:
            if query is key and key is value:               # self-attention: one product
                return F.split(F.linear(query, w, b), E, axis=-1)
            if key is value:                                # shared memory: queries, then keys+values
                w_q, w_kv = F.split(w, [E, 2 * E], axis=0)
                b_q, b_kv = F.split(b, [E, 2 * E], axis=0) if b is not None else (None, None)
                k, v = F.split(F.linear(key, w_kv, b_kv), E, axis=-1)
                return F.linear(query, w_q, b_q), k, v
            w_q, w_k, w_v = F.split(w, E, axis=0)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q, b_k, b_v = F.split(b, E, axis=0) if b is not None else (None, None, None)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    # -- masks
    def _mask_bias(self, mask, xp, dtype, name):
        """A mask as an additive float array on the device of ``xp``: boolean True -> -inf."""
        a = mask.data if isinstance(mask, Tensor) else mask
        if B.get_array_module(a) is not xp:
            a = xp.asarray(B.to_numpy(a)) if xp is not np else B.to_numpy(a)
        if a.dtype == np.bool_:
            bias = xp.zeros(a.shape, dtype=dtype)
            bias[a] = float("-inf")
            return bias
        if a.dtype.kind != "f":
            raise TypeError(f"MultiheadAttention: {name} must be boolean or floating point, got dtype {a.dtype}")
        return a.astype(dtype, copy=False)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        name = "MultiheadAttention"
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        if query.ndim not in (2, 3):
            raise ValueError(f"{name}: query must be (L, N, E), (N, L, E) with batch_first, or unbatched "
                             f"(L, E); got shape {query.shape}")
        batched = query.ndim == 3
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"{name}: query, key and value must all be batched (3-D) or all unbatched "
                             f"(2-D); got shapes {query.shape}, {key.shape} and {value.shape}")
        self_attn = query is key and key is value
        kv_same = key is value
        if not batched:                               # (L, E) -> (L, 1, E)
            query, key, value = (F.unsqueeze(t, 1) for t in (query, key, value))
            if key_padding_mask is not None:
                kpm = key_padding_mask.data if isinstance(key_padding_mask, Tensor) else key_padding_mask
                key_padding_mask = kpm.reshape((1,) + tuple(kpm.shape))
        elif self.batch_first:                        # (N, L, E) -> (L, N, E)
            query = F.transpose(query, 0, 1)
            key = query if self_attn else F.transpose(key, 0, 1)
            value = key if kv_same else F.transpose(value, 0, 1)
        if self_attn:
            key = value = query
        elif kv_same:
            value = key
        L, N, Eq = query.shape
        S = key.shape[0]
        if Eq != E:
            raise ValueError(f"{name}: query has {Eq} features but embed_dim is {E} (query shape {query.shape})")
        if key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError(f"{name}: key and value must have {self.kdim} and {self.vdim} features, got "
                             f"shapes {key.shape} and {value.shape}")
        if key.shape[:2] != value.shape[:2] or key.shape[1] != N:
            raise ValueError(f"{name}: key {key.shape} and value {value.shape} must have the same length "
                             f"and the query's batch size {N}")

        xp = B.get_array_module(query.data)
        dt = query.dtype
        bias = None
        if attn_mask is not None:
            am = self._mask_bias(attn_mask, xp, dt, "attn_mask")
            if am.ndim == 2:
                if tuple(am.shape) != (L, S):
                    raise ValueError(f"{name}: attn_mask has shape {tuple(am.shape)}, expected (L, S) = "
                                     f"({L}, {S}) or (N*num_heads, L, S) = ({N * H}, {L}, {S})")
            elif am.ndim == 3:
                if tuple(am.shape) != (N * H, L, S):
                    raise ValueError(f"{name}: attn_mask has shape {tuple(am.shape)}, expected (L, S) = "
                                     f"({L}, {S}) or (N*num_heads, L, S) = ({N * H}, {L}, {S})")
                am = am.reshape(N, H, L, S)
            else:
                raise ValueError(f"{name}: attn_mask must be 2-D (L, S) or 3-D (N*num_heads, L, S); got shape "
                                 f"{tuple(am.shape)}")
            bias = am
        if key_padding_mask is not None:
            kp = self._mask_bias(key_padding_mask, xp, dt, "key_padding_mask")
            if tuple(kp.shape) != (N, S):
                raise ValueError(f"{name}: key_padding_mask has shape {tuple(kp.shape)}, expected (N, S) = "
                                 f"({N}, {S})" + ("" if batched else " or (S,) for unbatched inputs"))
            kp = kp.reshape(N, 1, 1, S)
            bias = kp if bias is None else bias + kp

        q, k, v = self._in_projection(query, key, value)          # (L, N, E), (S, N, E), (S, N, E)
        # heads: (L, N, E) -> (L, N, H, hd) -> (N, H, L, hd)
        q = F.permute(F.reshape(q, L, N, H, hd), 1, 2, 0, 3)
        k = F.permute(F.reshape(k, S, N, H, hd), 1, 2, 0, 3)
        v = F.permute(F.reshape(v, S, N, H, hd), 1, 2, 0, 3)
        p = self.dropout if self.training else 0.0
        # is_causal is only a hint when attn_mask is given (PyTorch's meaning); without one it applies
        res = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p,
                                             is_causal=is_causal and attn_mask is None,
                                             return_weights=need_weights)
        o, w = res if need_weights else (res, None)
        # (N, H, L, hd) -> (L, N, H, hd) -> (L, N, E), or (N, L, E) when batch_first
        if self.batch_first and batched:
            o = F.reshape(F.permute(o, 0, 2, 1, 3), N, L, E)
        else:
            o = F.reshape(F.permute(o, 2, 0, 1, 3), L, N, E)
        out = self.out_proj(o)
        if not batched:
            out = F.squeeze(out, 1)
        if w is not None:
            if average_attn_weights:
                w = F.mean(w, axis=1)                               # (N, L, S)
            if not batched:
                w = F.squeeze(w, 0)
        return out, w
