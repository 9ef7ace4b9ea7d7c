"""Left-to-right decoding for sequence-to-sequence models: greedy search, beam search, and
reranking an n-best list with a second model (e.g. a right-to-left decoder).

A model is seen through a *step function*::

    step_fn(prefixes) -> log_probs

``prefixes`` is a list of token tuples (the tokens generated so far, without the start
token; the step function adds it), ``log_probs`` an array (len(prefixes), V) of
log p(next token | prefix, source) for each prefix.  A hypothesis ends when it emits
``eos_id``; its score is the sum of the log-probabilities of its tokens *including* the end
token, log p(y_1 .. y_n, EOS | x) = Σ_t log p(y_t | y_<t, x).

Beam search keeps the ``beam_size`` best unfinished prefixes at each step.  Scores only
decrease as a prefix grows (each step adds a log-probability ≤ 0), so the search stops as
soon as ``n_best`` hypotheses have finished and no unfinished prefix scores above the worst
of them: nothing still alive could enter the n-best list.

Reranking (agreement between target-bidirectional decoders, Liu et al., 2016; Sennrich et
al., 2016): a left-to-right decoder commits to its first tokens before it sees how the
sentence ends, so its errors pile up at the end of a sentence; a right-to-left decoder reads
the same hypothesis from the other end.  :func:`rerank` adds a second model's log-probability
of each *complete* hypothesis, weighted, and re-sorts:

    score(y) = log p_L2R(y | x) + w · log p_R2L(y | x)

It can only reorder what the beam found: it helps when the correct hypothesis is in the
n-best list but ranked below one that the left-to-right model likes and the right-to-left
model does not (the two models disagree about it); it cannot recover a hypothesis the beam
pruned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import backend as B

__all__ = ["Hypothesis", "greedy_search", "beam_search", "rerank"]


@dataclass(frozen=True)
class Hypothesis:
    """One output sequence.

    ``tokens``: the generated tokens, without the start and end tokens.  ``score``: the
    ranking score (after :func:`beam_search`, the L2R log-probability including the end token;
    after :func:`rerank`, the combined score).  ``finished``: whether it ended with the end
    token (False: cut off at ``max_len``).  ``components``: the parts of a combined score
    (``{"l2r": ..., "r2l": ...}``), empty before reranking.
    """
    tokens: tuple
    score: float
    finished: bool = True
    components: dict = field(default_factory=dict)


def _log_probs(step_fn, prefixes):
    lp = np.asarray(B.to_numpy(_data(step_fn(prefixes))), dtype=np.float64)
    if lp.ndim != 2 or lp.shape[0] != len(prefixes):
        raise ValueError(f"beam search: step_fn must return log-probabilities of shape "
                         f"({len(prefixes)}, vocab_size) for {len(prefixes)} prefixes, got shape {lp.shape}")
    return lp


def _data(x):
    return x.data if hasattr(x, "data") and hasattr(x, "requires_grad") else x


def _check(eos_id, max_len, beam_size=1, n_best=1):
    for name, v in (("max_len", max_len), ("beam_size", beam_size), ("n_best", n_best)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"beam search: {name} must be a positive integer, got {v!r}")
    if not isinstance(eos_id, (int, np.integer)) or eos_id < 0:
        raise ValueError(f"beam search: eos_id must be a non-negative integer, got {eos_id!r}")


def greedy_search(step_fn, eos_id, max_len=50):
    """The most probable next token at every step, until ``eos_id`` or ``max_len`` tokens:
    one :class:`Hypothesis`."""
    _check(eos_id, max_len)
    tokens, score = [], 0.0
    for _ in range(max_len):
        lp = _log_probs(step_fn, [tuple(tokens)])[0]
        tok = int(np.argmax(lp))
        score += float(lp[tok])
        if tok == eos_id:
            return Hypothesis(tuple(tokens), score, True)
        tokens.append(tok)
    return Hypothesis(tuple(tokens), score, False)


def beam_search(step_fn, eos_id, beam_size=4, max_len=50, n_best=None):
    """The ``n_best`` (default ``beam_size``) highest-scoring hypotheses found by a beam of
    ``beam_size``, best first (a list of :class:`Hypothesis`; unfinished ones, cut at
    ``max_len`` tokens, only when fewer than ``n_best`` finished).

    At each step every alive prefix is extended by every token; the candidates are visited
    best first (ties: lower prefix index, then lower token id, the order ``np.argmax`` uses).
    A candidate ending in ``eos_id`` becomes a finished hypothesis; the others fill the next
    beam until it holds ``beam_size`` prefixes.  Tokens with log-probability -inf are never
    chosen (a step function bans tokens that way).  With ``beam_size=1`` this is
    :func:`greedy_search`.
    """
    n_best = beam_size if n_best is None else n_best
    _check(eos_id, max_len, beam_size, n_best)
    alive = [((), 0.0)]                       # (tokens, score), best first
    finished = []
    for _ in range(max_len):
        lp = _log_probs(step_fn, [t for t, _ in alive])
        V = lp.shape[1]
        if eos_id >= V:
            raise ValueError(f"beam search: eos_id {eos_id} is not in the vocabulary of size {V}")
        cand = (np.array([s for _, s in alive])[:, None] + lp).reshape(-1)
        order = np.argsort(-cand, kind="stable")
        new_alive = []
        for j in order:
            k, tok = divmod(int(j), V)
            s = float(cand[j])
            if s == -np.inf:                   # forbidden tokens (log-prob -inf) and all after them
                break
            if tok == eos_id:
                finished.append(Hypothesis(alive[k][0], s, True))
            else:
                new_alive.append((alive[k][0] + (tok,), s))
                if len(new_alive) == beam_size:
                    break
        alive = new_alive
        finished.sort(key=lambda h: -h.score)
        if not alive or (len(finished) >= n_best and alive[0][1] <= finished[n_best - 1].score):
            break
    out = finished[:n_best]
    if len(out) < n_best:                      # cut off at max_len: the best unfinished prefixes
        out += [Hypothesis(t, s, False) for t, s in alive[:n_best - len(out)]]
    return out


def rerank(nbest, score_fn, weight=1.0):
    """Re-sort ``nbest`` by ``l2r + weight · score_fn`` (best first, ties keep their order).

    ``score_fn(list of token tuples) -> sequence of floats``: a second model's log-probability
    of each complete hypothesis (e.g. :meth:`Seq2SeqBiTransformer.score` with
    ``direction="r2l"``).  Unfinished hypotheses (cut off at ``max_len``) are dropped when any
    hypothesis finished.  Returns new :class:`Hypothesis` objects whose ``score`` is the
    combined score and whose ``components`` hold ``"l2r"`` (the original score) and ``"r2l"``.
    """
    nbest = list(nbest)
    if any(h.finished for h in nbest):
        # A hypothesis cut off at max_len has a partial (too high) left-to-right score and would
        # be scored by the other direction as if it ended there: rank only finished ones.
        nbest = [h for h in nbest if h.finished]
    if not nbest:
        return []
    other = np.asarray(B.to_numpy(_data(score_fn([h.tokens for h in nbest]))), dtype=np.float64).reshape(-1)
    if other.shape[0] != len(nbest):
        raise ValueError(f"rerank: score_fn returned {other.shape[0]} scores for {len(nbest)} hypotheses")
    out = []
    for h, o in zip(nbest, other):
        base = h.components.get("l2r", h.score)
        out.append(Hypothesis(h.tokens, base + weight * float(o), h.finished,
                              {"l2r": base, "r2l": float(o)}))
    out.sort(key=lambda h: -h.score)
    return out
