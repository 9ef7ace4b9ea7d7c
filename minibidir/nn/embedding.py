"""Token embeddings: a lookup table of learned vectors."""
from __future__ import annotations

from .. import functional as F
from .linear import _empty
from .module import Module, Parameter
from . import init

__all__ = ["Embedding"]


class Embedding(Module):
    """``weight[ids]`` for integer ids of any shape; weight ~ N(0, 1) as PyTorch.

    ``padding_idx``: that row starts at zero and receives no gradient.  An id outside
    0..num_embeddings-1 raises an IndexError naming the id and the table size.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings "
                                 f"({num_embeddings})")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(_empty(num_embeddings, embedding_dim, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
