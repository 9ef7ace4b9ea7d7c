"""Masked-language-model masking (document 002 §3.1, §5.2; BERT §3.1).

Of the tokens that are neither special ([CLS], [SEP], [PAD], ...) nor padding, each is
selected with probability 15%.  A selected token becomes [MASK] with probability 80%, a
random ordinary token with probability 10%, and stays unchanged with probability 10%; the
label of a selected position is its original id, every other label is -100 (ignored by
the loss).  The random and unchanged cases keep the model from learning that only [MASK]
positions matter, since [MASK] never appears at fine-tuning time.

Document 002's listing draws the random branch with probability 0.5 *of the remaining
20%*, which is the same 10%; its comment "10% 的掩码位置保持不变" sits above that random line,
though: the unchanged 10% is simply what is left.
"""
from __future__ import annotations

import numpy as np

__all__ = ["mask_tokens"]


def mask_tokens(input_ids, special_tokens_mask, mask_token_id, vocab_size, rng, mlm_probability=0.15,
                mask_fraction=0.8, random_fraction=0.1, random_token_ids=None):
    """Return ``(masked_ids, labels)`` for a batch of token ids (NumPy int arrays, host).

    ``special_tokens_mask``: 1/True where the token is special or padding (never selected).
    ``rng``: a ``numpy.random.Generator`` (seeded: the same seed gives the same masks).
    ``random_token_ids``: the ids a random replacement draws from (default: every id that is
    not special in this batch's vocabulary sense, i.e. ``0..vocab_size-1`` minus the ids that
    appear at special positions).
    """
    ids = np.asarray(input_ids)
    special = np.asarray(special_tokens_mask).astype(bool)
    if ids.shape != special.shape:
        raise ValueError(f"mask_tokens: input_ids shape {ids.shape} and special_tokens_mask shape "
                         f"{special.shape} differ")
    if not (0 <= mlm_probability <= 1 and 0 <= mask_fraction and 0 <= random_fraction
            and mask_fraction + random_fraction <= 1):
        raise ValueError(f"mask_tokens: bad probabilities mlm={mlm_probability}, mask={mask_fraction}, "
                         f"random={random_fraction}")
    selected = (rng.random(ids.shape) < mlm_probability) & ~special
    labels = np.where(selected, ids, -100).astype(np.int64)
    u = rng.random(ids.shape)
    to_mask = selected & (u < mask_fraction)
    to_random = selected & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    out = ids.astype(np.int64, copy=True)
    out[to_mask] = mask_token_id
    if to_random.any():
        if random_token_ids is None:
            excluded = np.unique(ids[special])
            pool = np.setdiff1d(np.arange(vocab_size), np.append(excluded, mask_token_id))
        else:
            pool = np.asarray(random_token_ids)
        out[to_random] = pool[rng.integers(0, len(pool), int(to_random.sum()))]
    return out, labels
