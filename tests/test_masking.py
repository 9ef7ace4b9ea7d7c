"""MLM masking: 15% of ordinary tokens selected; of those 80% [MASK], 10% random, 10% kept."""
import numpy as np
import pytest

from minibidir.text import mask_tokens

MASK, VOCAB = 4, 1000


def _batch(rng, n=64, t=128):
    ids = rng.integers(10, VOCAB, (n, t))
    special = np.zeros_like(ids, dtype=bool)
    ids[:, 0], ids[:, -1] = 2, 3                   # [CLS] ... [SEP]
    special[:, 0] = special[:, -1] = True
    lengths = rng.integers(20, t, n)
    for i, L in enumerate(lengths):                # right padding
        ids[i, L:] = 0
        special[i, L:] = True
    return ids, special


def test_masking_statistics_over_many_batches():
    rng = np.random.default_rng(0)
    sel = mask = rand = kept = ordinary = 0
    for _ in range(40):
        ids, special = _batch(rng)
        out, labels = mask_tokens(ids, special, MASK, VOCAB, rng)
        s = labels != -100
        assert not (s & special).any(), "special or padding tokens were selected"
        assert (labels[s] == ids[s]).all() and (out[~s] == ids[~s]).all()
        ordinary += (~special).sum()
        sel += s.sum()
        mask += (out[s] == MASK).sum()
        kept += (out[s] == ids[s]).sum()
        rand += ((out[s] != MASK) & (out[s] != ids[s])).sum()
    assert sel / ordinary == pytest.approx(0.15, abs=0.005)
    # random replacements may hit the original id by chance (1/|pool|), counted as kept
    assert mask / sel == pytest.approx(0.80, abs=0.01)
    assert rand / sel == pytest.approx(0.10, abs=0.008)
    assert kept / sel == pytest.approx(0.10, abs=0.008)


def test_random_replacements_are_ordinary_tokens():
    rng = np.random.default_rng(1)
    ids, special = _batch(rng)
    out, labels = mask_tokens(ids, special, MASK, VOCAB, rng, mask_fraction=0.0, random_fraction=1.0)
    s = labels != -100
    assert not np.isin(out[s], [0, 2, 3, MASK]).any()


def test_seeded_and_reproducible():
    ids, special = _batch(np.random.default_rng(2))
    a = mask_tokens(ids, special, MASK, VOCAB, np.random.default_rng(7))
    b = mask_tokens(ids, special, MASK, VOCAB, np.random.default_rng(7))
    c = mask_tokens(ids, special, MASK, VOCAB, np.random.default_rng(8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_input_is_not_modified_and_errors():
    ids, special = _batch(np.random.default_rng(3))
    before = ids.copy()
    mask_tokens(ids, special, MASK, VOCAB, np.random.default_rng(0))
    assert np.array_equal(ids, before)          # unlike the document's listing, which edits inputs in place
    with pytest.raises(ValueError, match="shape"):
        mask_tokens(ids, special[:, :5], MASK, VOCAB, np.random.default_rng(0))
    with pytest.raises(ValueError, match="probabilities"):
        mask_tokens(ids, special, MASK, VOCAB, np.random.default_rng(0), mask_fraction=0.9, random_fraction=0.2)
