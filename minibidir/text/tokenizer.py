"""A WordPiece tokenizer written from scratch: BERT's tokenization, encoding, decoding, training.

BERT turns text into ids in two stages.

1. **Basic tokenization** (Google's ``tokenization.py``, ``BasicTokenizer``):

   * *clean*: drop NUL, U+FFFD and control characters; turn every whitespace character into a
     space;
   * *CJK*: put spaces around every CJK ideograph, so each one becomes a word of its own
     (Hangul, kana and fullwidth forms are *not* in BERT's CJK ranges);
   * split on whitespace;
   * if ``do_lower_case``: lower-case; if ``strip_accents`` (which defaults to
     ``do_lower_case``): decompose (NFD) and drop the non-spacing marks (category Mn), so
     ``"Café"`` becomes ``"cafe"``;
   * split off every punctuation character as a word of its own: ASCII ``!"#$%&'()*+,-./``,
     ``:;<=>?@``, ``[\\]^_` ``, ``{|}~`` (these include symbols such as ``$`` and ``^``) and every
     Unicode character whose category starts with ``P``.

2. **WordPiece** (greedy longest-match-first) splits each word into vocabulary pieces: take the
   longest prefix that is in the vocabulary, then the longest continuation that is in the
   vocabulary *with a* ``##`` *prefix*, and so on; ``"unaffable" -> un ##aff ##able``.  A word
   with a part that matches nothing, or longer than ``max_input_chars_per_word`` (100)
   characters, becomes the single token ``[UNK]``.

``encode_plus`` / ``__call__`` then add ``[CLS] A [SEP]`` (or ``[CLS] A [SEP] B [SEP]``),
truncate, pad, and return ``input_ids``, ``token_type_ids`` (0 for A, 1 for B) and
``attention_mask`` (1 for real tokens, 0 for padding), as Hugging Face's ``BertTokenizer`` does.

Compatibility.  On a BERT ``vocab.txt`` the ids equal those of Hugging Face's ``BertTokenizer``
(``transformers`` 5, backed by the Rust ``tokenizers`` library), including these details where
that library departs from Google's original script:

* every character of a Unicode category ``C*`` (control, format, private use, unassigned,
  surrogate) is dropped, not only ``Cc``/``Cf``;
* lower-casing is per character, so a word-final capital sigma ``Σ`` becomes ``σ`` (Python's
  ``str.lower`` would give the final form ``ς``);
* the CJK range of Extension E starts at U+2B920 (Google's script: U+2B820);
* special tokens written in the text (``"[MASK]"``, exactly, case-sensitive) stay single tokens;
* pair truncation ``'longest_first'`` splits the budget as ``tokenizers`` does: the shorter
  sequence stays whole if the longer one can still get at least as many tokens, otherwise each
  gets half and the longer one (the second, on a tie) the odd token.  (The Python tokenizer
  removes one token at a time from the longer one, which gives the odd token to the first.)

Training (:meth:`WordPieceTokenizer.train`) starts from single characters (``c`` at the start of
a word, ``##c`` inside one) and repeatedly merges the adjacent pair with the best score: the
plain pair count (``scoring="frequency"``, the default: byte-pair-encoding's rule, which is what
``tokenizers``' ``WordPieceTrainer`` does) or WordPiece's likelihood score
``count(ab) / (count(a) * count(b))`` (``scoring="wordpiece"``).
"""
from __future__ import annotations

import heapq
import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

__all__ = ["WordPieceTokenizer", "BertTokenizer", "TokenizerFileError", "SPECIAL_TOKENS",
           "is_whitespace", "is_control", "is_punctuation", "is_chinese_char",
           "strip_accents", "clean_up_tokenization", "wordpiece_split", "load_vocab"]

#: The five special tokens of BERT, in the order a trained vocabulary puts them first.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_NAME = "WordPieceTokenizer"


class TokenizerFileError(FileNotFoundError, ValueError):
    """A vocabulary or configuration file that does not exist (both a ``FileNotFoundError``
    and a ``ValueError``)."""


# --------------------------------------------------------------------------------------------
# Character classes (BERT's definitions, with Hugging Face's choices noted above)
# --------------------------------------------------------------------------------------------

def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, category ``Zs``, and the line/paragraph separators
    U+2028/U+2029 (which a whitespace split treats as spaces anyway)."""
    if char in " \t\n\r\u2028\u2029":
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """Control characters, dropped by the cleaning step: every category ``C*`` except tab,
    newline and carriage return (which count as whitespace)."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """ASCII 33-47, 58-64, 91-96, 123-126 (BERT treats all non-alphanumeric ASCII as punctuation,
    ``$``, ``+``, ``^`` and ``` ` ``` included), and every Unicode category ``P*``."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(cp: int) -> bool:
    """The CJK Unified Ideographs blocks BERT splits one per token (a code point).  Hangul,
    Hiragana, Katakana and fullwidth Latin are not among them."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def strip_accents(text: str) -> str:
    """Canonical decomposition (NFD), then drop the non-spacing marks: ``"Ångström" -> "Angstrom"``."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def clean_up_tokenization(text: str) -> str:
    """Hugging Face's clean-up after decoding: no space before ``. ? ! ,`` and English
    contractions (``"don ' t" -> "don't"``, ``"it ' s" -> "it's"``)."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


def wordpiece_split(word: str, vocab, unk_token: str = "[UNK]", prefix: str = "##",
                    max_input_chars_per_word: int = 100) -> list[str]:
    """Greedy longest-match-first WordPiece of one word, the plain version (the tokenizer runs a
    faster one with the same result).

    >>> wordpiece_split("unaffable", {"un", "##aff", "##able"})
    ['un', '##aff', '##able']
    """
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
            end -= 1
        else:                                   # nothing matched: the whole word is unknown
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


def load_vocab(path) -> dict[str, int]:
    """A ``vocab.txt`` (one token per line, the line number is the id) as ``{token: id}``."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"{_NAME}: vocabulary file not found: {str(path)!r}")
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        vocab[line.rstrip("\r")] = i
    if not vocab:
        raise ValueError(f"{_NAME}: vocabulary file {str(path)!r} is empty")
    return vocab


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _CleanTable(dict):
    """``str.translate`` table for the cleaning + CJK step, filled lazily per code point:
    control characters map to ``None`` (dropped), whitespace to a space, CJK ideographs to
    ``" c "``; every other character to itself (a capital sigma to ``σ`` when lower-casing)."""

    def __init__(self, chinese: bool, lower: bool):
        super().__init__()
        self.chinese, self.lower = chinese, lower

    def __missing__(self, cp):
        c = chr(cp)
        if cp == 0 or cp == 0xFFFD or is_control(c):
            out = None
        elif is_whitespace(c):
            out = " "
        elif self.chinese and is_chinese_char(cp):
            out = f" {c} "
        elif self.lower and c == "\u03a3":
            out = "\u03c3"
        else:
            out = c
        self[cp] = out
        return out


_PADDING = {False: "do_not_pad", None: "do_not_pad", "do_not_pad": "do_not_pad",
            True: "longest", "longest": "longest", "max_length": "max_length"}
_TRUNCATION = {False: "do_not_truncate", "do_not_truncate": "do_not_truncate",
               True: "longest_first", "longest_first": "longest_first",
               "only_first": "only_first", "only_second": "only_second"}
_CACHE_LIMIT = 1 << 18


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer (see the module docstring for every step).

    ``vocab`` is ``{token: id}`` or a list of tokens (the position is the id).  Build one with
    :meth:`from_vocab_file`, :meth:`from_pretrained_dir` or :meth:`train`.

    >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "!"])
    >>> tok("Hello, world!")["input_ids"]
    [2, 5, 1, 6, 7, 3]
    """

    def __init__(self, vocab, *, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, unk_token: str = "[UNK]",
                 sep_token: str = "[SEP]", pad_token: str = "[PAD]", cls_token: str = "[CLS]",
                 mask_token: str = "[MASK]", model_max_length: int = 512,
                 max_input_chars_per_word: int = 100, continuing_subword_prefix: str = "##",
                 padding_side: str = "right", clean_up_tokenization_spaces: bool = True):
        if isinstance(vocab, dict):
            self.vocab = dict(vocab)
        else:
            self.vocab = {}
            for i, tok in enumerate(vocab):
                self.vocab[tok] = i
        if not self.vocab:
            raise ValueError(f"{_NAME}: empty vocabulary")
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        if unk_token not in self.vocab:
            raise ValueError(f"{_NAME}: the unknown token {unk_token!r} is not in the vocabulary")
        self.model_max_length = int(model_max_length)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.continuing_subword_prefix = continuing_subword_prefix
        if padding_side not in ("right", "left"):
            raise ValueError(f"{_NAME}: padding_side must be 'right' or 'left', got {padding_side!r}")
        self.padding_side = padding_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self._setup()

    def _setup(self):
        """Derived tables: special ids, the cleaning table, the word cache, piece-length bounds."""
        specials = [self.pad_token, self.unk_token, self.cls_token, self.sep_token, self.mask_token]
        self._specials_in_vocab = [t for t in specials if t is not None and t in self.vocab]
        # Special tokens written in the text stay whole (longest first, exact match).
        pattern = "|".join(re.escape(t) for t in sorted(self._specials_in_vocab, key=len, reverse=True))
        self._special_re = re.compile(f"({pattern})") if pattern else None
        self._special_starts = "".join(sorted({t[0] for t in self._specials_in_vocab if t}))
        self._all_special_ids = frozenset(self.vocab[t] for t in self._specials_in_vocab)
        self._table = _CleanTable(self.tokenize_chinese_chars, self.do_lower_case)
        self._cache: dict[str, tuple[int, ...]] = {}
        p = self.continuing_subword_prefix
        self._max_first = max((len(t) for t in self.vocab if not t.startswith(p)), default=1)
        self._max_cont = max((len(t) - len(p) for t in self.vocab if t.startswith(p)), default=1)
        self._unk_id = self.vocab[self.unk_token]

    # ---------------------------------------------------------------- constructors, saving
    @classmethod
    def from_vocab_file(cls, path, do_lower_case: bool = True, **kwargs) -> "WordPieceTokenizer":
        """A tokenizer over a BERT ``vocab.txt`` (``bert-base-uncased``: ``do_lower_case=True``)."""
        return cls(load_vocab(path), do_lower_case=do_lower_case, **kwargs)

    @classmethod
    def from_pretrained_dir(cls, directory, **kwargs) -> "WordPieceTokenizer":
        """A tokenizer from a local folder with ``vocab.txt`` and (optionally)
        ``tokenizer_config.json`` (``do_lower_case``, ``strip_accents``,
        ``tokenize_chinese_chars``, ``model_max_length``, the special tokens); ``kwargs``
        override the file."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerFileError(f"{_NAME}: not a directory: {str(directory)!r} (this library "
                                     f"reads local folders only; it downloads nothing)")
        config = {}
        cfg_path = directory / "tokenizer_config.json"
        if cfg_path.is_file():
            with open(cfg_path, encoding="utf-8") as fh:
                raw = json.load(fh)
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "unk_token",
                        "sep_token", "pad_token", "cls_token", "mask_token",
                        "clean_up_tokenization_spaces", "padding_side"):
                value = raw.get(key)
                if isinstance(value, dict):             # an AddedToken written as a dict
                    value = value.get("content")
                if value is not None:
                    config[key] = value
            mml = raw.get("model_max_length")
            if isinstance(mml, (int, float)) and 0 < mml < 1e9:
                config["model_max_length"] = int(mml)
        config.update(kwargs)
        return cls(load_vocab(directory / "vocab.txt"), **config)

    from_pretrained = from_pretrained_dir

    def save_vocabulary(self, path) -> str:
        """Write ``vocab.txt`` (one token per line in id order) to ``path``, or into ``path`` if it
        is a directory; returns the file written.  The write is atomic."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.txt"
        ids = sorted(self.ids_to_tokens)
        if ids != list(range(len(ids))):
            raise ValueError(f"{_NAME}: ids are not contiguous from 0; cannot write a vocab.txt")
        _atomic_write_text(path, "".join(self.ids_to_tokens[i] + "\n" for i in ids))
        return str(path)

    def save_pretrained(self, directory) -> list[str]:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` so :meth:`from_pretrained_dir` reads
        back the same tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = dict(do_lower_case=self.do_lower_case, strip_accents=self.strip_accents,
                      tokenize_chinese_chars=self.tokenize_chinese_chars, unk_token=self.unk_token,
                      sep_token=self.sep_token, pad_token=self.pad_token, cls_token=self.cls_token,
                      mask_token=self.mask_token, model_max_length=self.model_max_length,
                      padding_side=self.padding_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      tokenizer_class="BertTokenizer")
        cfg = directory / "tokenizer_config.json"
        _atomic_write_text(cfg, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        return [self.save_vocabulary(directory / "vocab.txt"), str(cfg)]

    # ---------------------------------------------------------------- vocabulary facts
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def _special_id(self, token):
        return self.vocab.get(token) if token is not None else None

    @property
    def pad_token_id(self):
        return self._special_id(self.pad_token)

    @property
    def unk_token_id(self):
        return self._special_id(self.unk_token)

    @property
    def cls_token_id(self):
        return self._special_id(self.cls_token)

    @property
    def sep_token_id(self):
        return self._special_id(self.sep_token)

    @property
    def mask_token_id(self):
        return self._special_id(self.mask_token)

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self._specials_in_vocab)

    @property
    def all_special_ids(self) -> list[int]:
        return [self.vocab[t] for t in self._specials_in_vocab]

    def __repr__(self):
        return (f"{_NAME}(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, model_max_length={self.model_max_length})")

    # ---------------------------------------------------------------- tokenization
    def _split_specials(self, text: str) -> list[str]:
        """Alternating [text, special, text, special, ..., text] pieces."""
        if self._special_re is None or not any(c in text for c in self._special_starts):
            return [text]
        return self._special_re.split(text)

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """The piece ids of one whitespace-delimited word (normalisation, punctuation split,
        WordPiece), cached."""
        if self.do_lower_case:
            word = word.lower()
        if self.strip_accents:
            word = strip_accents(word)
        out: list[int] = []
        for part in self._split_punctuation(word):
            out.extend(self._wordpiece_ids(part))
        return tuple(out)

    @staticmethod
    def _split_punctuation(word: str) -> list[str]:
        if word.isalnum():
            return [word]
        parts, current = [], []
        for c in word:
            if is_punctuation(c):
                if current:
                    parts.append("".join(current))
                    current = []
                parts.append(c)
            else:
                current.append(c)
        if current:
            parts.append("".join(current))
        return parts

    def _wordpiece_ids(self, word: str) -> list[int]:
        vocab = self.vocab
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [self._unk_id]
        i = vocab.get(word)
        if i is not None:
            return [i]
        prefix = self.continuing_subword_prefix
        out, start = [], 0
        while start < n:
            end = min(n, start + (self._max_first if start == 0 else self._max_cont))
            while end > start:
                piece = word[start:end] if start == 0 else prefix + word[start:end]
                i = vocab.get(piece)
                if i is not None:
                    break
                end -= 1
            else:
                return [self._unk_id]
            out.append(i)
            start = end
        return out

    def _text_ids(self, text: str) -> list[int]:
        """Ids of a text without special tokens added (the core of every encode)."""
        if not isinstance(text, str):
            raise TypeError(f"{_NAME}: expected a str, got {type(text).__name__}")
        cache, table = self._cache, self._table
        out: list[int] = []
        pieces = self._split_specials(text)
        for k, piece in enumerate(pieces):
            if k % 2:                                   # a special token written in the text
                out.append(self.vocab[piece])
                continue
            for word in piece.translate(table).split():
                ids = cache.get(word)
                if ids is None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    ids = cache[word] = self._word_ids(word)
                out.extend(ids)
        return out

    def basic_tokenize(self, text: str) -> list[str]:
        """Stage 1 only: the normalised words (cleaned, CJK split, lower-cased and accent-stripped
        as configured, punctuation split), before WordPiece."""
        out: list[str] = []
        for k, piece in enumerate(self._split_specials(text)):
            if k % 2:
                out.append(piece)
                continue
            for word in piece.translate(self._table).split():
                if self.do_lower_case:
                    word = word.lower()
                if self.strip_accents:
                    word = strip_accents(word)
                out.extend(self._split_punctuation(word))
        return out

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of a text: ``"Unaffable!" -> ['una', '##ffa', '##ble', '!']``."""
        return [self.ids_to_tokens[i] for i in self._text_ids(text)]

    def convert_tokens_to_ids(self, tokens):
        """A token's id (``[UNK]``'s for an unknown token), or a list of them for a list."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self._unk_id)
        return [self.vocab.get(t, self._unk_id) for t in tokens]

    def _check_id(self, i):
        try:
            return self.ids_to_tokens[int(i)]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{_NAME}: token id {i!r} is out of range for a vocabulary of "
                             f"{self.vocab_size} tokens") from None

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """The token of an id, or a list of tokens for a list (or array) of ids."""
        if isinstance(ids, (int, np.integer)):
            return self._check_id(ids)
        ids = _as_id_list(ids)
        special = self._all_special_ids if skip_special_tokens else ()
        return [self._check_id(i) for i in ids if i not in special]

    def convert_tokens_to_string(self, tokens) -> str:
        """Join tokens with spaces, gluing ``##`` continuations to the piece before."""
        p, out = self.continuing_subword_prefix, []
        for k, t in enumerate(tokens):
            if k and t.startswith(p):
                out.append(t[len(p):])
            else:
                out.append(" " + t if k else t)
        return "".join(out)

    # ---------------------------------------------------------------- encoding
    def build_inputs_with_special_tokens(self, ids_0, ids_1=None) -> list[int]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        if cls_id is None or sep_id is None:
            raise ValueError(f"{_NAME}: add_special_tokens=True needs {self.cls_token!r} and "
                             f"{self.sep_token!r} in the vocabulary")
        out = [cls_id] + list(ids_0) + [sep_id]
        if ids_1 is not None:
            out += list(ids_1) + [sep_id]
        return out

    def create_token_type_ids_from_sequences(self, ids_0, ids_1=None) -> list[int]:
        """0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``."""
        n0 = len(ids_0) + 2
        return [0] * n0 if ids_1 is None else [0] * n0 + [1] * (len(ids_1) + 1)

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 where a special token is, 0 elsewhere.  With ``already_has_special_tokens=True`` the
        ids are a finished sequence and every id of a special token (``[PAD]``, ``[UNK]``,
        ``[CLS]``, ``[SEP]``, ``[MASK]``) counts; otherwise the mask is that of the ``[CLS]`` and
        ``[SEP]`` tokens ``build_inputs_with_special_tokens`` would add."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(f"{_NAME}: with already_has_special_tokens=True pass one "
                                 f"finished sequence, not a pair")
            special = self._all_special_ids
            return [1 if i in special else 0 for i in _as_id_list(token_ids_0)]
        mask = [1] + [0] * len(token_ids_0) + [1]
        if token_ids_1 is not None:
            mask += [0] * len(token_ids_1) + [1]
        return mask

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, add_special_tokens,
                    pair):
        """Hugging Face's rules for turning the arguments into (padding, truncation, max_length)."""
        try:
            pad = _PADDING[padding]
        except (KeyError, TypeError):
            raise ValueError(f"{_NAME}: unknown padding strategy {padding!r}; use True/'longest', "
                             f"'max_length' or False/'do_not_pad'") from None
        if truncation is None:          # HF: a max_length without padding switches truncation on
            trunc = "longest_first" if (max_length is not None and pad == "do_not_pad") else "do_not_truncate"
        else:
            try:
                trunc = _TRUNCATION[truncation]
            except (KeyError, TypeError):
                raise ValueError(f"{_NAME}: unknown truncation strategy {truncation!r}; use True/"
                                 f"'longest_first', 'only_first', 'only_second' or "
                                 f"False/'do_not_truncate'") from None
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 0:
                raise ValueError(f"{_NAME}: max_length must be a non-negative int, got {max_length!r}")
            max_length = int(max_length)
        elif pad == "max_length" or trunc != "do_not_truncate":
            max_length = self.model_max_length
        if trunc != "do_not_truncate":
            n_special = self.num_special_tokens_to_add(pair) if add_special_tokens else 0
            if max_length < n_special:
                raise ValueError(f"{_NAME}: max_length={max_length} is smaller than the "
                                 f"{n_special} special tokens of a {'pair' if pair else 'single'} "
                                 f"sequence")
            if trunc == "only_second" and not pair:
                raise ValueError(f"{_NAME}: truncation='only_second' needs a text_pair")
        if pad_to_multiple_of is not None:
            if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, (int, np.integer)) \
                    or pad_to_multiple_of <= 0:
                raise ValueError(f"{_NAME}: pad_to_multiple_of must be a positive int, got "
                                 f"{pad_to_multiple_of!r}")
        return pad, trunc, max_length

    @staticmethod
    def _truncate(ids, pair, strategy, budget):
        """Cut ``ids`` (and ``pair``) to ``budget`` tokens in total, as ``tokenizers`` does."""
        total = len(ids) + (len(pair) if pair is not None else 0)
        if strategy == "do_not_truncate" or total <= budget:
            return ids, pair
        if strategy == "longest_first":
            if pair is None:
                return ids[:budget], None
            n1, n2, swap = len(ids), len(pair), False
            if n1 > n2:                                    # n1: the shorter one
                n1, n2, swap = n2, n1, True
            n2 = n1 if n1 > budget else max(n1, budget - n1)
            if n1 + n2 > budget:
                n1 = budget // 2
                n2 = n1 + budget % 2
            if swap:
                n1, n2 = n2, n1
            return ids[:n1], pair[:n2]
        remove = total - budget
        target = ids if strategy == "only_first" else pair
        if len(target) <= remove:
            raise ValueError(f"{_NAME}: truncation={strategy!r} cannot cut the "
                             f"{'first' if strategy == 'only_first' else 'second'} sequence "
                             f"({len(target)} tokens) by {remove} tokens; use 'longest_first' or "
                             f"a larger max_length")
        if strategy == "only_first":
            return ids[:len(ids) - remove], pair
        return ids, pair[:len(pair) - remove]

    def _encode_ids(self, text, text_pair, add_special_tokens, trunc, max_length,
                    return_special_tokens_mask):
        ids = self._text_ids(text)
        pair = self._text_ids(text_pair) if text_pair is not None else None
        if trunc != "do_not_truncate":
            budget = max_length - (self.num_special_tokens_to_add(pair is not None)
                                   if add_special_tokens else 0)
            ids, pair = self._truncate(ids, pair, trunc, budget)
        if add_special_tokens:
            input_ids = self.build_inputs_with_special_tokens(ids, pair)
            type_ids = self.create_token_type_ids_from_sequences(ids, pair)
            special = self.get_special_tokens_mask(ids, pair) if return_special_tokens_mask else None
        else:
            input_ids = ids + (pair if pair is not None else [])
            type_ids = [0] * len(ids) + ([1] * len(pair) if pair is not None else [])
            special = [0] * len(input_ids) if return_special_tokens_mask else None
        enc = {"input_ids": input_ids, "token_type_ids": type_ids,
               "attention_mask": [1] * len(input_ids)}
        if special is not None:
            enc["special_tokens_mask"] = special
        return enc

    def _pad(self, enc, length):
        n = length - len(enc["input_ids"])
        if n <= 0:
            return enc
        pad_id = self.pad_token_id
        if pad_id is None:
            raise ValueError(f"{_NAME}: padding needs {self.pad_token!r} in the vocabulary")
        fill = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0,
                "special_tokens_mask": 1}
        for key, values in enc.items():
            extra = [fill[key]] * n
            enc[key] = values + extra if self.padding_side == "right" else extra + values
        return enc

    @staticmethod
    def _round_up(n, multiple):
        return n if not multiple or n % multiple == 0 else (n // multiple + 1) * multiple

    def _finish(self, encs, return_token_type_ids, return_attention_mask, return_tensors, batched):
        keys = ["input_ids"]
        if return_token_type_ids is None or return_token_type_ids:
            keys.append("token_type_ids")
        if return_attention_mask is None or return_attention_mask:
            keys.append("attention_mask")
        if encs and "special_tokens_mask" in encs[0]:
            keys.append("special_tokens_mask")
        if return_tensors is None:
            if batched:
                return {k: [e[k] for e in encs] for k in keys}
            return {k: encs[0][k] for k in keys}
        if return_tensors != "np":
            raise ValueError(f"{_NAME}: return_tensors={return_tensors!r} is not supported; use "
                             f"'np' (NumPy int64 arrays) or None (lists)")
        lengths = {len(e["input_ids"]) for e in encs}
        if len(lengths) > 1:
            raise ValueError(f"{_NAME}: cannot stack sequences of lengths {sorted(lengths)} into "
                             f"one array; pass padding=True or padding='max_length'")
        width = lengths.pop() if lengths else 0
        return {k: np.array([e[k] for e in encs], dtype=np.int64).reshape(len(encs), width)
                for k in keys}

    def encode_plus(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
                    padding=False, truncation=None, max_length: int | None = None,
                    pad_to_multiple_of: int | None = None, return_tensors: str | None = None,
                    return_token_type_ids: bool | None = None,
                    return_attention_mask: bool | None = None,
                    return_special_tokens_mask: bool = False) -> dict:
        """Encode one text (or pair) like Hugging Face's ``encode_plus``: a dict with
        ``input_ids``, ``token_type_ids``, ``attention_mask`` (and ``special_tokens_mask`` on
        request), lists, or NumPy int64 arrays of shape ``(1, length)`` with
        ``return_tensors="np"``.

        ``padding``: False (none), True/'longest' (none for a single text), 'max_length'.
        ``truncation``: True/'longest_first', 'only_first', 'only_second', False; left at None it
        is switched on when ``max_length`` is given without padding (as in Hugging Face).
        ``max_length`` defaults to ``model_max_length`` where padding or truncation needs it.
        """
        pad, trunc, max_length = self._strategies(padding, truncation, max_length,
                                                  pad_to_multiple_of, add_special_tokens,
                                                  text_pair is not None)
        enc = self._encode_ids(text, text_pair, add_special_tokens, trunc, max_length,
                               return_special_tokens_mask)
        if pad == "max_length":
            self._pad(enc, self._round_up(max_length, pad_to_multiple_of))
        elif pad == "longest" and pad_to_multiple_of:
            self._pad(enc, self._round_up(len(enc["input_ids"]), pad_to_multiple_of))
        return self._finish([enc], return_token_type_ids, return_attention_mask, return_tensors,
                            batched=return_tensors is not None)

    def batch_encode_plus(self, batch_text_or_text_pairs, add_special_tokens: bool = True,
                          padding=False, truncation=None, max_length: int | None = None,
                          pad_to_multiple_of: int | None = None, return_tensors: str | None = None,
                          return_token_type_ids: bool | None = None,
                          return_attention_mask: bool | None = None,
                          return_special_tokens_mask: bool = False) -> dict:
        """Encode a list of texts or of ``(text, text_pair)`` tuples; padding 'longest' pads to the
        longest in the batch.  Lists of lists, or ``(batch, length)`` int64 arrays with
        ``return_tensors="np"``."""
        if isinstance(batch_text_or_text_pairs, str):
            raise TypeError(f"{_NAME}: batch_encode_plus expects a list of texts, got a str")
        items = []
        for item in batch_text_or_text_pairs:
            if isinstance(item, (tuple, list)):
                if len(item) != 2:
                    raise ValueError(f"{_NAME}: a batch item must be a text or a (text, text_pair) "
                                     f"pair, got {len(item)} elements")
                items.append((item[0], item[1]))
            else:
                items.append((item, None))
        pairs = {p is not None for _, p in items}
        encs = []
        if items:
            strategies = {pair: self._strategies(padding, truncation, max_length, pad_to_multiple_of,
                                                 add_special_tokens, pair) for pair in pairs}
            for text, pair in items:
                _, trunc, mlen = strategies[pair is not None]
                encs.append(self._encode_ids(text, pair, add_special_tokens, trunc, mlen,
                                             return_special_tokens_mask))
            pad, _, mlen = strategies[items[0][1] is not None]
            if pad != "do_not_pad":
                target = mlen if pad == "max_length" else max(len(e["input_ids"]) for e in encs)
                target = self._round_up(target, pad_to_multiple_of)
                for e in encs:
                    self._pad(e, target)
        else:
            self._strategies(padding, truncation, max_length, pad_to_multiple_of,
                             add_special_tokens, False)
        return self._finish(encs, return_token_type_ids, return_attention_mask, return_tensors,
                            batched=True)

    def __call__(self, text, text_pair=None, **kwargs) -> dict:
        """``tok(text)`` or ``tok(text, pair)`` is :meth:`encode_plus`; ``tok([t1, t2, ...])`` or
        ``tok([a1, a2], [b1, b2])`` is :meth:`batch_encode_plus`."""
        if isinstance(text, str):
            if text_pair is not None and not isinstance(text_pair, str):
                raise TypeError(f"{_NAME}: text is a str but text_pair is a "
                                f"{type(text_pair).__name__}")
            return self.encode_plus(text, text_pair, **kwargs)
        if isinstance(text, (list, tuple)):
            if text_pair is not None:
                if isinstance(text_pair, str) or len(text_pair) != len(text):
                    raise ValueError(f"{_NAME}: text and text_pair must be lists of the same length")
                return self.batch_encode_plus(list(zip(text, text_pair)), **kwargs)
            return self.batch_encode_plus(text, **kwargs)
        raise TypeError(f"{_NAME}: text must be a str or a list of str, got {type(text).__name__}")

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               padding=False, truncation=None, max_length: int | None = None,
               pad_to_multiple_of: int | None = None, return_tensors: str | None = None) -> list[int]:
        """Just the ``input_ids`` of :meth:`encode_plus`."""
        return self.encode_plus(text, text_pair, add_special_tokens=add_special_tokens,
                                padding=padding, truncation=truncation, max_length=max_length,
                                pad_to_multiple_of=pad_to_multiple_of,
                                return_tensors=return_tensors)["input_ids"]

    # ---------------------------------------------------------------- decoding
    def decode(self, token_ids, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """Text from ids: tokens joined by spaces, ``##`` pieces glued on, then (by default) the
        spaces before punctuation and in contractions removed.  ``skip_special_tokens`` drops
        ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[MASK]``, as Hugging Face does.  The
        text is the normalised one: lower-cased and without accents for an uncased vocabulary."""
        ids = _as_id_list(token_ids)
        if ids and isinstance(ids[0], list):
            raise ValueError(f"{_NAME}: decode takes one sequence; use batch_decode for a batch")
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """:meth:`decode` for each row of a batch (a list of lists or a 2-D array)."""
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces)
                for s in _as_id_list(sequences)]

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, corpus, vocab_size: int = 30522, min_frequency: int = 2,
              special_tokens=SPECIAL_TOKENS, scoring: str = "frequency", do_lower_case: bool = True,
              strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
              continuing_subword_prefix: str = "##", **kwargs) -> "WordPieceTokenizer":
        """Learn a WordPiece vocabulary from ``corpus`` (a str or an iterable of str) and return
        a tokenizer over it.

        The corpus is basic-tokenized as the finished tokenizer will do it (so lower-cased etc.
        as configured) and its words are counted.  Every word starts as its characters, the
        first plain and the others with the ``##`` prefix (``"the" -> t ##h ##e``).  The
        vocabulary starts as the special tokens, then every character in both forms (plain, and
        ``##``-prefixed for characters that are not punctuation or CJK, which always stand
        alone), in code-point order, so any text made of these characters encodes without
        ``[UNK]``.  Then, until the vocabulary has ``vocab_size`` tokens, the adjacent pair
        ``(a, b)`` with the best score among pairs seen at least ``min_frequency`` times is
        merged into one token everywhere (``t + ##h -> th``):

        * ``scoring="frequency"`` (default): ``count(ab)``, byte-pair encoding's rule, which is
          what ``tokenizers``' ``WordPieceTrainer`` implements;
        * ``scoring="wordpiece"``: ``count(ab) / (count(a) * count(b))``, the likelihood gain of
          the merge under a unigram model (Schuster & Nakajima; the WordPiece score described in
          Hugging Face's course).  It prefers pairs whose parts rarely occur apart, so it first
          spells out rare words letter by letter and keeps frequent short words in pieces: on
          tiny-shakespeare even an 8,000-token vocabulary still splits "the" into ``th ##e``
          (``##e`` is too common on its own), where the frequency rule makes every frequent
          word one token by 2,000.

        Ties go to the higher pair count, then to the pair of lower ids.  Counts are kept up
        to date incrementally (only the words holding the merged pair are touched) and the
        best pair comes from a heap with lazy deletion, so an 8,000-token vocabulary from 1 MB
        of text takes seconds.  ``kwargs`` go to the constructor.
        """
        if scoring not in ("wordpiece", "frequency"):
            raise ValueError(f"{_NAME}.train: scoring must be 'wordpiece' or 'frequency', got {scoring!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size <= 0:
            raise ValueError(f"{_NAME}.train: vocab_size must be a positive int, got {vocab_size!r}")
        special_tokens = list(dict.fromkeys(special_tokens))
        names = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"),
                         SPECIAL_TOKENS))
        for key, default in names.items():
            kwargs.setdefault(key, default)
        if kwargs["unk_token"] not in special_tokens:
            raise ValueError(f"{_NAME}.train: special_tokens must include the unknown token "
                             f"{kwargs['unk_token']!r}, got {special_tokens}")
        # A throw-away tokenizer does the basic tokenization exactly as the trained one will.
        probe = cls(special_tokens, do_lower_case=do_lower_case, strip_accents=strip_accents,
                    tokenize_chinese_chars=tokenize_chinese_chars,
                    continuing_subword_prefix=continuing_subword_prefix,
                    **{k: v for k, v in kwargs.items() if k in names})
        words = Counter()
        for text in ([corpus] if isinstance(corpus, str) else corpus):
            words.update(probe.basic_tokenize(text))
        for t in special_tokens:
            words.pop(t, None)
        vocab = _train_wordpiece(words, int(vocab_size), int(min_frequency), special_tokens,
                                 scoring, continuing_subword_prefix, tokenize_chinese_chars)
        return cls(vocab, do_lower_case=do_lower_case, strip_accents=strip_accents,
                   tokenize_chinese_chars=tokenize_chinese_chars,
                   continuing_subword_prefix=continuing_subword_prefix, **kwargs)


def _as_id_list(ids):
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    return [i.tolist() if hasattr(i, "tolist") else i for i in ids]


def _train_wordpiece(word_counts: Counter, vocab_size: int, min_frequency: int, special_tokens,
                     scoring: str, prefix: str, split_cjk: bool) -> list[str]:
    """The merge loop of :meth:`WordPieceTokenizer.train`; returns the vocabulary in id order."""
    chars = set()
    for w in word_counts:
        chars.update(w)
    vocab = list(special_tokens)
    sym_id: dict[str, int] = {}               # symbol string -> symbol index (not the vocab id)
    sym_str: list[str] = []

    def symbol(s):
        i = sym_id.get(s)
        if i is None:
            i = sym_id[s] = len(sym_str)
            sym_str.append(s)
        return i

    in_vocab = set(vocab)
    for c in sorted(chars):
        # Punctuation (and CJK, when split) always stands alone: no "##" form is ever needed.
        alone = is_punctuation(c) or (split_cjk and is_chinese_char(ord(c)))
        for s in ((c,) if alone else (c, prefix + c)):
            symbol(s)
            if s not in in_vocab:
                vocab.append(s)
                in_vocab.add(s)
    words, freqs = [], []
    for w, f in word_counts.items():
        words.append([symbol(w[0])] + [symbol(prefix + c) for c in w[1:]])
        freqs.append(f)

    unit = Counter()                           # symbol -> weighted count
    pair_count: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], set] = {}
    unit_pairs: dict[int, set] = {}            # symbol -> pairs it is part of (lazily pruned)
    for idx, (w, f) in enumerate(zip(words, freqs)):
        for s in w:
            unit[s] += f
        for p in zip(w, w[1:]):
            pair_count[p] = pair_count.get(p, 0) + f
            pair_words.setdefault(p, set()).add(idx)
    for p in pair_count:
        unit_pairs.setdefault(p[0], set()).add(p)
        unit_pairs.setdefault(p[1], set()).add(p)

    wordpiece = scoring == "wordpiece"

    def entry(p, c):
        if wordpiece:
            return (-c / (unit[p[0]] * unit[p[1]]), -c, p[0], p[1])
        return (-c, p[0], p[1])

    heap = [entry(p, c) for p, c in pair_count.items() if c >= min_frequency]
    heapq.heapify(heap)
    plen = len(prefix)
    while len(vocab) < vocab_size and heap:
        top = heapq.heappop(heap)
        p = (top[-2], top[-1])
        c = pair_count.get(p, 0)
        if c < min_frequency or entry(p, c) != top:   # stale: a newer entry exists (or none)
            continue
        a, b = p
        merged = symbol(sym_str[a] + sym_str[b][plen:])
        if sym_str[merged] not in in_vocab:
            vocab.append(sym_str[merged])
            in_vocab.add(sym_str[merged])
        delta: dict[tuple[int, int], int] = {}
        for idx in pair_words.pop(p, ()):
            w, f = words[idx], freqs[idx]
            if len(w) < 2:
                continue
            new, i, n, k = [], 0, len(w), 0
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    new.append(merged)
                    i += 2
                    k += 1
                else:
                    new.append(w[i])
                    i += 1
            if not k:
                continue
            for q in zip(w, w[1:]):
                delta[q] = delta.get(q, 0) - f
            for q in zip(new, new[1:]):
                delta[q] = delta.get(q, 0) + f
                pair_words.setdefault(q, set()).add(idx)
            words[idx] = new
            unit[a] -= k * f
            unit[b] -= k * f
            unit[merged] += k * f
        changed = set()
        for q, d in delta.items():
            if not d:
                continue
            old = pair_count.get(q, 0)
            cnt = old + d
            if cnt > 0:
                pair_count[q] = cnt
                if old == 0:
                    unit_pairs.setdefault(q[0], set()).add(q)
                    unit_pairs.setdefault(q[1], set()).add(q)
            else:
                pair_count.pop(q, None)
                pair_words.pop(q, None)
            changed.add(q)
        if wordpiece:                          # a unit's count changed: so did its pairs' scores
            for u in {a, b, merged}:
                live = {q for q in unit_pairs.get(u, ()) if q in pair_count}
                unit_pairs[u] = live
                changed |= live
        for q in changed:
            cnt = pair_count.get(q, 0)
            if cnt >= min_frequency:
                heapq.heappush(heap, entry(q, cnt))
        if len(heap) > 4 * len(pair_count) + 1024:       # drop the stale entries now and then
            heap = [entry(q, cnt) for q, cnt in pair_count.items() if cnt >= min_frequency]
            heapq.heapify(heap)
    return vocab


#: The name Hugging Face uses for the same tokenizer.
BertTokenizer = WordPieceTokenizer
