"""minibidir.data: the registry, verified fetching (mirror -> cache -> download), and the readers.

Tests that read a real data set use the mirror named by MINIBIDIR_DATA_MIRROR (or, when that is
unset, ``<repo>/../shared/data`` if it exists) or the cache, and skip cleanly when the file is in
neither.  The download path is tested against a small HTTP server on 127.0.0.1 started here,
with a temporary cache, so it needs no network.
"""
import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minibidir import data
from minibidir.data import registry as R
from minibidir.data import DataError, Dataset, FileSpec

_DEFAULT_MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ----------------------------------------------------------------------------------------------
# real data sets (skip when neither mirrored nor cached)


@pytest.fixture
def real_data(monkeypatch):
    """Point at the shared mirror when MINIBIDIR_DATA_MIRROR is unset; never download."""
    if os.environ.get(R.ENV_MIRROR) is None and _DEFAULT_MIRROR.is_dir():
        monkeypatch.setenv(R.ENV_MIRROR, str(_DEFAULT_MIRROR))
    monkeypatch.setenv(R.ENV_OFFLINE, "1")


def need(name, file=None):
    if not data.available(name, file):
        pytest.skip(f"data set {name!r} ({file or 'all files'}) is neither mirrored nor cached; "
                    f"set {R.ENV_MIRROR} to a mirror directory")


_parsed = {}


def _ud(name, split):
    need(name, split)
    if (name, split) not in _parsed:
        _parsed[name, split] = data.load_ud(name, split)
    return _parsed[name, split]


@pytest.mark.parametrize("split, n_sent, n_words", [
    ("train", 12544, 204577), ("dev", 2001, 25147), ("test", 2077, 25094)])
def test_ud_english_ewt_counts(real_data, split, n_sent, n_words):
    sents = _ud("ud_english_ewt", split)
    assert len(sents) == n_sent
    assert sum(len(s) for s in sents) == n_words          # integer-ID rows only
    for s in sents:
        n = len(s)
        assert len(s.upos) == len(s.xpos) == len(s.lemmas) == len(s.heads) == len(s.deprels) == n
        assert s.sent_id and s.text
        assert [d for h, d in zip(s.heads, s.deprels) if h == 0] == ["root"]
        assert all(0 <= h <= n for h in s.heads)
    assert len({s.sent_id for s in sents}) == n_sent


def test_ud_english_ewt_multiword_tokens_and_empty_nodes_are_skipped(real_data):
    sents = _ud("ud_english_ewt", "dev")
    # dev has 359 multiword tokens: their parts are words, the range line is not
    by_id = {s.sent_id: s for s in sents}
    assert "1" not in {w for s in sents for w in s.words if "-" in w and w[0].isdigit()}
    s = by_id["weblog-blogspot.com_nominations_20041117172713_ENG_20041117_172713-0001"]
    assert s.words == ["From", "the", "AP", "comes", "this", "story", ":"]
    assert s.upos == ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"]
    assert s.heads == [3, 3, 4, 0, 6, 4, 4]
    assert s.text == "From the AP comes this story :"


def test_ud_english_ewt_upos_tagset(real_data):
    tags = {t for s in _ud("ud_english_ewt", "train") for t in s.upos}
    assert tags == set(data.UPOS_TAGS)
    assert len(data.UPOS_TAGS) == 17


@pytest.mark.parametrize("split, n_sent, n_words", [("dev", 500, 12663), ("test", 500, 12012)])
def test_ud_chinese_gsdsimp_counts(real_data, split, n_sent, n_words):
    sents = _ud("ud_chinese_gsdsimp", split)
    assert (len(sents), sum(map(len, sents))) == (n_sent, n_words)
    assert {t for s in sents for t in s.upos} <= set(data.UPOS_TAGS)


def test_wikitext2(real_data):
    need("wikitext2")
    lines = data.read_wikitext("valid")
    assert len(lines) == 3760
    assert lines[1] == " = Homarus gammarus = "
    toks = data.wikitext_tokens("valid")
    assert len(toks) == 217646 and toks.count("<eos>") == 3760
    assert toks.count("<unk>") == 11718
    assert len(data.wikitext_tokens("test")) == 245569
    # the published git blob id of the same file (the other checksum the registry supports)
    raw = data.fetch("wikitext2", "valid").read_bytes()
    assert data.git_blob_sha1(raw) == "eec944eb2d9e46061cd34a6913528797db6842fc"


def test_tiny_shakespeare(real_data):
    need("tiny_shakespeare")
    text = data.read_tiny_shakespeare()
    assert len(text) == 1115394 and len(set(text)) == 65
    assert text.count("\n") == 40000 and len(text.split()) == 202651
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_polarity_and_split(real_data):
    need("rt_polarity")
    sents, labels = data.read_polarity()
    assert len(sents) == 10662 and labels.dtype == np.int64
    assert labels[:5331].tolist() == [1] * 5331 and labels[5331:].tolist() == [0] * 5331
    assert sum(len(s.split()) for s in sents[:5331]) == 112445
    assert sum(len(s.split()) for s in sents[5331:]) == 111628
    assert all(s and s == s.strip() for s in sents)
    train, dev, test = data.split_indices(len(sents), seed=0)
    assert (len(train), len(dev), len(test)) == (8529, 1066, 1067)
    assert 0.45 < labels[dev].mean() < 0.55


def test_state_union(real_data):
    need("state_union")
    speeches = data.read_state_union()
    assert len(speeches) == 65
    assert speeches[0][0] == "1945-Truman" and speeches[-1][0] == "2006-GWBush"
    assert sum(len(t.split()) for _, t in speeches) == 349711
    assert not any("\ufffd" in t for _, t in speeches)
    # the latin-1 files decode to real characters, not replacement marks
    assert any(any(ord(c) > 127 for c in t) for n, t in speeches if n == "1954-Eisenhower")


def test_mirror_files_match_the_registry(real_data):
    """Every registered file that the mirror holds passes its checksum (fetch verifies)."""
    mirror = data.mirror_dir()
    if mirror is None or not mirror.is_dir():
        pytest.skip("no mirror directory")
    checked = 0
    for name in data.names():
        for f in data.get(name).files:
            if (mirror / f.path).is_file():
                assert data.fetch(name, f.key) == mirror / f.path
                checked += 1
    if checked == 0:
        pytest.skip(f"the mirror {mirror} holds none of the registered files")


# ----------------------------------------------------------------------------------------------
# readers on small hand-written inputs (no data set needed)


_CONLLU = """\
# newdoc id = d1
# sent_id = s1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
4.1\tknew\tknow\tVERB\tVBD\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = s2
# text = Yes
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_read_conllu_integer_rows_only(tmp_path):
    p = tmp_path / "x.conllu"
    p.write_text(_CONLLU, encoding="utf-8")
    s1, s2 = data.read_conllu(p)
    assert s1.words == ["I", "do", "n't", "know", "."]
    assert s1.lemmas == ["I", "do", "not", "know", "."]
    assert s1.upos == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert s1.heads == [4, 4, 4, 0, 4]
    assert s1.deprels == ["nsubj", "aux", "advmod", "root", "punct"]
    assert (s1.sent_id, s1.text, s1.meta["newdoc id"]) == ("s1", "I don't know.", "d1")
    assert (s2.words, s2.sent_id, s2.heads) == (["Yes"], "s2", [0])   # no final blank line


@pytest.mark.parametrize("bad, msg", [
    ("1\tI\tI\tPRON\n", "expected 10 tab-separated columns"),
    ("2\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n", "out of sequence"),
    ("1\tI\tI\tPRON\tPRP\t_\t7\troot\t_\t_\n", "HEAD points past"),
])
def test_read_conllu_errors_name_the_line(tmp_path, bad, msg):
    p = tmp_path / "bad.conllu"
    p.write_text("# sent_id = a\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=msg) as e:
        data.read_conllu(p)
    assert "bad.conllu, line" in str(e.value)


def test_read_state_union_latin1_fallback(tmp_path):
    z = tmp_path / "su.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("state_union/", b"")
        zf.writestr("state_union/2000-A.txt", "caf\u00e9 utf8".encode("utf-8"))
        zf.writestr("state_union/1999-B.txt", "caf\u00e9 latin".encode("latin-1"))
        zf.writestr("state_union/README", b"not a speech")
    assert data.read_state_union(z) == [("1999-B", "caf\u00e9 latin"), ("2000-A", "caf\u00e9 utf8")]


def test_split_indices():
    parts = data.split_indices(1000, seed=3)
    assert [len(p) for p in parts] == [800, 100, 100]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert all(np.array_equal(a, b) for a, b in zip(parts, data.split_indices(1000, seed=3)))
    assert not np.array_equal(parts[1], data.split_indices(1000, seed=4)[1])
    # pinned: numpy's PCG64 permutation, the same on every platform
    assert [p.tolist() for p in data.split_indices(10, seed=0)] == [[0, 2, 3, 4, 5, 6, 7, 9], [8], [1]]
    assert [len(p) for p in data.split_indices(10662, seed=0)] == [8529, 1066, 1067]
    assert [len(p) for p in data.split_indices(10, 0, (0.5, 0.5))] == [5, 5]
    with pytest.raises(ValueError, match="sum to 1"):
        data.split_indices(10, 0, (0.8, 0.1))


def test_wikitext_token_convention(tmp_path):
    p = tmp_path / "w.txt"
    p.write_bytes(b" \n = A = \n b c \n")
    assert data.read_wikitext(path=p) == [" ", " = A = ", " b c "]
    assert data.wikitext_tokens(path=p) == ["<eos>", "=", "A", "=", "<eos>", "b", "c", "<eos>"]


# ----------------------------------------------------------------------------------------------
# the registry


def test_registry_entries():
    assert set(data.names()) >= {"ud_english_ewt", "rt_polarity", "wikitext2", "tiny_shakespeare",
                                 "state_union", "ud_chinese_gsdsimp"}
    for name in data.names():
        ds = data.get(name)
        assert ds.license and ds.description
        for f in ds.files:
            assert f.path.startswith(name + "/") and f.license
            if f.archive is None:
                assert f.url.startswith("https://raw.githubusercontent.com/") and f.url.endswith(f.filename)
            else:
                assert ds.file(f.archive).url.endswith(".zip") and f.member
            assert f.sha256 or f.git_blob
    ewt = data.get("ud_english_ewt")
    assert ewt.default_keys() == ["train", "dev", "test"]
    assert ewt.file("train").path == "ud_english_ewt/en_ewt-ud-train.conllu"
    assert ewt.file("en_ewt-ud-dev.conllu") is ewt.file("dev")
    assert ewt.file("train").size == 14203025
    wt = data.get("wikitext2")
    assert wt.default_keys() == ["valid", "test"]
    assert wt.file("train").sha256 is None and wt.file("train").git_blob.startswith("2d84b35a")
    rt = data.get("rt_polarity")
    assert rt.file("pos").archive == "archive"
    assert rt.file("archive").sha256 == "6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b"
    assert "CC BY-SA 4.0" in data.info("ud_english_ewt")


def test_filespec_validation():
    with pytest.raises(ValueError, match="sha256 or a git blob"):
        FileSpec("a", "ds/a", url="http://x/a")
    with pytest.raises(ValueError, match="64 lower-case hex"):
        FileSpec("a", "ds/a", url="http://x/a", sha256="abc")
    with pytest.raises(ValueError, match="relative"):
        FileSpec("a", "../a", url="http://x/a", sha256="0" * 64)
    with pytest.raises(ValueError, match="not a downloadable file"):
        Dataset("ds", (FileSpec("a", "ds/a", sha256="0" * 64, archive="zip", member="a"),), "MIT")


def test_lookup_errors():
    with pytest.raises(DataError, match="unknown data set 'nope'.*ud_english_ewt"):
        data.fetch("nope")
    with pytest.raises(DataError, match="has no file 'validation'.*valid"):
        data.fetch("wikitext2", "validation")
    with pytest.raises(DataError, match="several files.*fetch_all"):
        data.fetch("ud_english_ewt")
    assert data.available("nope") is False


def test_git_blob_ids():
    assert data.git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert data.git_blob_sha1(b"hello world\n") == "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"


# ----------------------------------------------------------------------------------------------
# downloads against a local HTTP server


class _Server:
    """Serves ``routes[path] = (body, mode)`` on 127.0.0.1; mode is "ok", "truncate" (announces
    the full length, sends half, closes), "nolength" (no Content-Length header) or missing (404)."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404, "Not Found")
                    return
                body, mode = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode != "nolength":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty cache, no mirror, online, no proxies, a short timeout, a fresh verification memo."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(R.ENV_CACHE, str(cache))
    monkeypatch.setenv(R.ENV_MIRROR, "")
    monkeypatch.delenv(R.ENV_OFFLINE, raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(R, "DEFAULT_TIMEOUT", 5.0)
    R.clear_verification_memo()
    yield cache
    R.clear_verification_memo()


@pytest.fixture
def reg():
    added = []

    def _register(ds):
        added.append(ds.name)
        return data.register(ds)

    yield _register
    for name in added:
        data.unregister(name)


def _files_under(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


_BODY = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))


def _spec(server, body=_BODY, key="blob", **kw):
    kw.setdefault("size", len(body))
    kw.setdefault("sha256", hashlib.sha256(body).hexdigest())
    return FileSpec(key, f"testset/{key}.bin", url=f"{server.url}/files/{key}.bin", license="test", **kw)


def test_download_lands_in_cache_verified_once(sandbox, server, reg):
    server.routes["/files/blob.bin"] = (_BODY, "ok")
    reg(Dataset("testset", (_spec(server),), "test"))
    assert not data.available("testset")
    p = data.fetch("testset")
    assert p == sandbox / "testset" / "blob.bin" and p.read_bytes() == _BODY
    assert data.available("testset") and data.available("testset", verify=True)
    assert data.fetch("testset", "blob") == p and data.path("testset", "blob.bin") == p
    R.clear_verification_memo()                     # a new process: re-hash from disk, no download
    assert data.fetch("testset") == p
    assert server.requests == ["/files/blob.bin"]
    assert _files_under(sandbox) == ["testset/blob.bin"]


def test_download_checksum_mismatch(sandbox, server, reg):
    wrong = bytes(reversed(_BODY))
    server.routes["/files/blob.bin"] = (wrong, "ok")
    reg(Dataset("testset", (_spec(server),), "test"))
    with pytest.raises(DataError) as e:
        data.fetch("testset")
    msg = str(e.value)
    for part in ("'testset'", "'blob'", f"{server.url}/files/blob.bin", "sha256",
                 hashlib.sha256(_BODY).hexdigest(), hashlib.sha256(wrong).hexdigest()):
        assert part in msg
    assert _files_under(sandbox) == []              # no file, no temporary file
    assert not data.available("testset")


@pytest.mark.parametrize("mode, n_bytes, pattern", [
    ("truncate", 300_000, r"truncated download .* announced 300000 bytes \(Content-Length\) but sent 150000"),
    ("ok", 1000, r"announces 1000 bytes, expected 300000 bytes"),
    ("nolength", 1000, r"size: expected 300000 bytes, got 1000 bytes"),
], ids=["cut-off-mid-body", "shorter-file", "shorter-file-no-length"])
def test_download_truncated_or_short(sandbox, server, reg, mode, n_bytes, pattern):
    server.routes["/files/blob.bin"] = (_BODY[:n_bytes], mode)
    reg(Dataset("testset", (_spec(server),), "test"))
    with pytest.raises(DataError, match=pattern) as e:
        data.fetch("testset")
    assert f"{server.url}/files/blob.bin" in str(e.value)
    assert _files_under(sandbox) == []


def test_download_missing_file_404(sandbox, server, reg):
    reg(Dataset("testset", (_spec(server),), "test"))
    with pytest.raises(DataError, match=r"'testset', file 'blob'.*/files/blob.bin failed: HTTP 404"):
        data.fetch("testset")
    assert _files_under(sandbox) == []


def test_download_unreachable_host(sandbox, reg):
    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = FileSpec("blob", "testset/blob.bin", url=f"http://127.0.0.1:{port}/blob.bin",
                    sha256="0" * 64, license="test")
    reg(Dataset("testset", (spec,), "test"))
    with pytest.raises(DataError, match=r"cannot reach http://127\.0\.0\.1:\d+/blob\.bin.*MINIBIDIR_DATA_MIRROR"):
        data.fetch("testset")
    assert _files_under(sandbox) == []


def test_offline_mode_explains_how_to_get_the_file(sandbox, server, reg, monkeypatch):
    server.routes["/files/blob.bin"] = (_BODY, "ok")
    reg(Dataset("testset", (_spec(server),), "test"))
    monkeypatch.setenv(R.ENV_OFFLINE, "1")
    with pytest.raises(DataError) as e:
        data.fetch("testset")
    msg = str(e.value)
    assert "MINIBIDIR_OFFLINE" in msg and "MINIBIDIR_DATA_MIRROR" in msg
    assert f"{server.url}/files/blob.bin" in msg and hashlib.sha256(_BODY).hexdigest() in msg
    assert server.requests == [] and _files_under(sandbox) == []


def test_git_blob_only_file(sandbox, server, reg):
    body = b"a file published with only its git blob id\n" * 100
    server.routes["/files/blob.bin"] = (body, "nolength")
    good = _spec(server, body, size=None, sha256=None, git_blob=data.git_blob_sha1(body))
    reg(Dataset("testset", (good,), "test"))
    assert data.fetch("testset").read_bytes() == body
    data.unregister("testset")
    R.clear_verification_memo()
    (sandbox / good.path).unlink()
    reg(Dataset("testset", (_spec(server, body, size=None, sha256=None, git_blob="1" * 40),), "test"))
    with pytest.raises(DataError, match=f"git blob id: expected {'1' * 40}, got {data.git_blob_sha1(body)}"):
        data.fetch("testset")
    assert _files_under(sandbox) == []


def test_corrupt_cache_file_is_replaced(sandbox, server, reg, monkeypatch):
    server.routes["/files/blob.bin"] = (_BODY, "ok")
    reg(Dataset("testset", (_spec(server),), "test"))
    p = data.fetch("testset")
    p.write_bytes(bytes(len(_BODY)))                # same size, wrong content
    R.clear_verification_memo()
    monkeypatch.setenv(R.ENV_OFFLINE, "1")
    with pytest.raises(DataError, match="cached copy .* is corrupt"):
        data.fetch("testset")
    monkeypatch.delenv(R.ENV_OFFLINE)
    assert data.fetch("testset").read_bytes() == _BODY
    assert len(server.requests) == 2
    assert _files_under(sandbox) == ["testset/blob.bin"]


def test_mirror_first_verified_once(sandbox, server, reg, tmp_path, monkeypatch):
    server.routes["/files/blob.bin"] = (_BODY, "ok")
    mirror = tmp_path / "mirror"
    (mirror / "testset").mkdir(parents=True)
    (mirror / "testset" / "blob.bin").write_bytes(_BODY)
    monkeypatch.setenv(R.ENV_MIRROR, str(mirror))
    reg(Dataset("testset", (_spec(server),), "test"))
    calls = []
    real_hash = R._hash_file
    monkeypatch.setattr(R, "_hash_file", lambda *a: calls.append(a[0]) or real_hash(*a))
    assert data.fetch("testset") == mirror / "testset" / "blob.bin"
    assert data.fetch("testset") == mirror / "testset" / "blob.bin"
    assert len(calls) == 1                          # the second open did not hash again
    st = os.stat(mirror / "testset" / "blob.bin")
    os.utime(mirror / "testset" / "blob.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    data.fetch("testset")
    assert len(calls) == 2                          # a changed mtime is checked again
    assert server.requests == [] and _files_under(sandbox) == []
    # a corrupt mirror copy is an error, not silently bypassed
    (mirror / "testset" / "blob.bin").write_bytes(bytes(len(_BODY)))
    with pytest.raises(DataError, match=r"mirrored copy .*blob\.bin does not match the registry \(sha256: expected"):
        data.fetch("testset")
    assert not data.available("testset", verify=True) and data.available("testset")


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/", b"")
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


_A, _B = b"positive line one\npositive line two\n" * 50, b"negative line\n" * 70


def _archive_set(server, zbytes, a_sha=None, a_member="pkg/a.txt"):
    return Dataset("testset", (
        FileSpec("archive", "testset/pack.zip", url=f"{server.url}/files/pack.zip", size=len(zbytes),
                 sha256=hashlib.sha256(zbytes).hexdigest(), default=False),
        FileSpec("a", "testset/a.txt", archive="archive", member=a_member, size=len(_A),
                 sha256=a_sha or hashlib.sha256(_A).hexdigest()),
        FileSpec("b", "testset/b.txt", archive="archive", member="pkg/b.txt", size=len(_B),
                 sha256=hashlib.sha256(_B).hexdigest()),
    ), "test")


def test_archive_members_extracted_and_verified(sandbox, server, reg):
    zbytes = _zip({"pkg/a.txt": _A, "pkg/b.txt": _B, "pkg/README": b"x"})
    server.routes["/files/pack.zip"] = (zbytes, "ok")
    reg(_archive_set(server, zbytes))
    assert not data.available("testset", "a")
    assert data.fetch("testset", "a").read_bytes() == _A
    assert data.fetch("testset", "b").read_bytes() == _B
    assert data.fetch_all("testset") == {"a": sandbox / "testset/a.txt", "b": sandbox / "testset/b.txt"}
    assert server.requests == ["/files/pack.zip"]
    assert _files_under(sandbox) == ["testset/a.txt", "testset/b.txt", "testset/pack.zip"]
    # a lost member is extracted again from the cached archive, without a download
    (sandbox / "testset" / "a.txt").unlink()
    assert data.available("testset", "a")           # its archive is there
    assert data.fetch("testset", "a").read_bytes() == _A
    assert server.requests == ["/files/pack.zip"]


def test_archive_member_checksum_mismatch(sandbox, server, reg):
    zbytes = _zip({"pkg/a.txt": _A, "pkg/b.txt": _B})
    server.routes["/files/pack.zip"] = (zbytes, "ok")
    reg(_archive_set(server, zbytes, a_sha="f" * 64))
    with pytest.raises(DataError) as e:
        data.fetch("testset", "a")
    msg = str(e.value)
    assert "member 'pkg/a.txt'" in msg and f"expected {'f' * 64}, got {hashlib.sha256(_A).hexdigest()}" in msg
    assert f"{server.url}/files/pack.zip" in msg
    assert "testset/a.txt" not in _files_under(sandbox)        # no half-written member
    assert not any(p.endswith(".part") for p in _files_under(sandbox))


def test_archive_missing_member_and_bad_archive(sandbox, server, reg):
    zbytes = _zip({"pkg/b.txt": _B})
    server.routes["/files/pack.zip"] = (zbytes, "ok")
    reg(_archive_set(server, zbytes))
    with pytest.raises(DataError, match=r"has no member 'pkg/a.txt'; it holds: pkg/, pkg/b.txt"):
        data.fetch("testset", "a")
    assert "testset/a.txt" not in _files_under(sandbox)
    # an archive whose own checksum fails is never extracted and never kept
    data.unregister("testset")
    for p in list((sandbox / "testset").iterdir()):
        p.unlink()
    good = _zip({"pkg/a.txt": _A, "pkg/b.txt": _B})
    server.routes["/files/pack.zip"] = (good[:40] + bytes([good[40] ^ 1]) + good[41:], "ok")
    reg(_archive_set(server, good))
    with pytest.raises(DataError, match=r"file 'archive' .*sha256: expected"):
        data.fetch("testset", "a")
    assert _files_under(sandbox) == []


def test_offline_archive_member_names_the_member_and_the_archive(sandbox, server, reg, monkeypatch):
    zbytes = _zip({"pkg/a.txt": _A, "pkg/b.txt": _B})
    server.routes["/files/pack.zip"] = (zbytes, "ok")
    reg(_archive_set(server, zbytes))
    monkeypatch.setenv(R.ENV_OFFLINE, "1")
    with pytest.raises(DataError) as e:
        data.fetch("testset", "a")
    msg = str(e.value)
    assert "file 'a'" in msg and "member pkg/a.txt" in msg and f"{server.url}/files/pack.zip" in msg
    assert "MINIBIDIR_DATA_MIRROR=<mirror>" in msg
    assert server.requests == [] and _files_under(sandbox) == []
