"""The data-set registry: named files with canonical URLs and checksums; fetch, verify, cache.

A file is looked for in this order:

1. the **mirror** (``MINIBIDIR_DATA_MIRROR``), a read-only directory with the same layout as the
   cache (``ud_english_ewt/en_ewt-ud-train.conllu``, ...);
2. the **cache** (``MINIBIDIR_DATA_CACHE``, default ``~/.cache/minibidir``);
3. the **canonical URL**, downloaded into the cache (never when ``MINIBIDIR_OFFLINE=1``).

Every file is verified against its checksum wherever it comes from (sha256, or the git blob id
``sha1(b"blob <size>\\0" + content)`` where only that is published).  Verifications are
remembered in memory by (path, size, mtime), so opening a large mirrored file again does not
hash it again.

Downloads stream into a temporary file inside the cache directory while hashing, are checked
against the Content-Length, the expected size and the checksum, and only then renamed into place.
On any failure the temporary file is deleted and a :class:`DataError` says which data set, which
file, which URL, and what was expected versus found.  A file that lives inside an archive (the
polarity zip) is extracted from the verified archive in the same way: temporary file, checksum,
rename.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataError", "FileSpec", "Dataset", "register", "unregister", "get", "names",
           "fetch", "fetch_all", "path", "available", "mirror_dir", "cache_dir", "is_offline",
           "verify_file", "git_blob_sha1", "sha256_file", "clear_verification_memo",
           "DEFAULT_TIMEOUT"]

log = logging.getLogger(__name__)

ENV_MIRROR = "MINIBIDIR_DATA_MIRROR"
ENV_CACHE = "MINIBIDIR_DATA_CACHE"
ENV_OFFLINE = "MINIBIDIR_OFFLINE"
DEFAULT_TIMEOUT = 60.0       # seconds without data before a download gives up
_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]+$")


class DataError(RuntimeError):
    """A data file could not be found, downloaded or verified.  The message says which data set,
    which file, where from, and what to do."""


# --------------------------------------------------------------------------------------------
# registry entries


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set.

    ``path`` is relative to the mirror/cache root (``"<data set>/<file name>"``).  At least one of
    ``sha256`` and ``git_blob`` must be given; ``size`` (bytes) is checked when known.  A file
    with ``archive`` set is not downloaded itself: it is the member ``member`` of the archive file
    with key ``archive`` in the same data set, and ``url`` is left empty (the archive's is used).
    ``default`` files are the ones :func:`fetch_all` gets; the others are optional extras.
    """
    key: str
    path: str
    url: str = ""
    sha256: str | None = None
    size: int | None = None
    license: str = ""
    git_blob: str | None = None
    archive: str | None = None
    member: str | None = None
    default: bool = True

    def __post_init__(self):
        if not self.sha256 and not self.git_blob:
            raise ValueError(f"FileSpec {self.path!r}: give a sha256 or a git blob id to verify it by")
        for what, value, n in (("sha256", self.sha256, 64), ("git_blob", self.git_blob, 40)):
            if value is not None and (len(value) != n or not _HEX.match(value)):
                raise ValueError(f"FileSpec {self.path!r}: {what} must be {n} lower-case hex digits, "
                                 f"got {value!r}")
        if self.archive is None and not self.url:
            raise ValueError(f"FileSpec {self.path!r}: a file that is not an archive member needs a URL")
        if self.archive is not None and not self.member:
            raise ValueError(f"FileSpec {self.path!r}: an archive member needs its member name")
        p = Path(self.path)
        if p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
            raise ValueError(f"FileSpec {self.path!r}: path must be relative, '<data set>/<file>'")

    @property
    def filename(self) -> str:
        return Path(self.path).name

    def checksum_text(self) -> str:
        parts = []
        if self.sha256:
            parts.append(f"sha256 {self.sha256}")
        if self.git_blob:
            parts.append(f"git blob {self.git_blob}")
        if self.size is not None:
            parts.append(f"{self.size} bytes")
        return ", ".join(parts)


@dataclass(frozen=True)
class Dataset:
    """A named data set: its files by key, a license, a description and a citation."""
    name: str
    files: tuple[FileSpec, ...]
    license: str
    description: str = ""
    homepage: str = ""
    citation: str = ""
    _by_key: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(self.files))
        by_key = {}
        for f in self.files:
            if f.key in by_key:
                raise ValueError(f"data set {self.name!r}: two files with key {f.key!r}")
            by_key[f.key] = f
        for f in self.files:
            if f.archive is not None:
                a = by_key.get(f.archive)
                if a is None or a.archive is not None:
                    raise ValueError(f"data set {self.name!r}: file {f.key!r} names archive "
                                     f"{f.archive!r}, which is not a downloadable file of the set")
        object.__setattr__(self, "_by_key", by_key)

    def keys(self):
        return [f.key for f in self.files]

    def default_keys(self):
        return [f.key for f in self.files if f.default]

    def file(self, key: str) -> FileSpec:
        """A file by key (``"train"``) or by file name (``"en_ewt-ud-train.conllu"``)."""
        if key in self._by_key:
            return self._by_key[key]
        for f in self.files:
            if f.filename == key or f.path == key:
                return f
        raise DataError(f"data set {self.name!r} has no file {key!r}; its files are: "
                        + ", ".join(f"{f.key} ({f.filename})" for f in self.files))

    def members_of(self, archive_key: str):
        return [f for f in self.files if f.archive == archive_key]


_REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset, replace: bool = False) -> Dataset:
    """Add a data set to the registry (``replace=True`` to overwrite one of the same name)."""
    if dataset.name in _REGISTRY and not replace:
        raise ValueError(f"data set {dataset.name!r} is already registered (pass replace=True)")
    _REGISTRY[dataset.name] = dataset
    return dataset


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered data sets' names."""
    return sorted(_REGISTRY)


def get(name: str | Dataset) -> Dataset:
    """The registered :class:`Dataset` called ``name``."""
    if isinstance(name, Dataset):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; registered: {', '.join(names())}") from None


# --------------------------------------------------------------------------------------------
# configuration (read from the environment at every call, so tests can change it)


def mirror_dir() -> Path | None:
    """The mirror directory from ``MINIBIDIR_DATA_MIRROR`` (None when unset or empty)."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The cache directory: ``MINIBIDIR_DATA_CACHE`` or ``~/.cache/minibidir``."""
    value = os.environ.get(ENV_CACHE, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "minibidir"


def is_offline() -> bool:
    """True when ``MINIBIDIR_OFFLINE`` is set to 1/true/yes/on: never download."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------
# checksums


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content: ``sha1(b"blob <size>\\0" + data)``."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _hash_file(file: Path, want_sha256: bool, want_blob: bool) -> dict:
    """Hash a file in one pass: its size and whichever digests are asked for."""
    size = file.stat().st_size
    sha = hashlib.sha256() if want_sha256 else None
    blob = hashlib.sha1(b"blob %d\0" % size) if want_blob else None
    with open(file, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if sha is not None:
                sha.update(chunk)
            if blob is not None:
                blob.update(chunk)
    out = {}
    if sha is not None:
        out["sha256"] = sha.hexdigest()
    if blob is not None:
        out["git_blob"] = blob.hexdigest()
    return out


def sha256_file(file) -> str:
    """The sha256 of a file, hex."""
    return _hash_file(Path(file), True, False)["sha256"]


# (resolved path, inode, size, mtime_ns) -> {"sha256": ..., "git_blob": ...}
_memo: dict[tuple, dict] = {}


def clear_verification_memo() -> None:
    """Forget which files were already hashed (the next open hashes them again)."""
    _memo.clear()


def _stat_key(file: Path):
    st = file.stat()
    return (str(file.resolve()), st.st_ino, st.st_size, st.st_mtime_ns), st.st_size


def _digests(file: Path, spec: FileSpec) -> tuple[int, dict]:
    key, size = _stat_key(file)
    known = _memo.setdefault(key, {})
    need_sha = bool(spec.sha256) and "sha256" not in known
    need_blob = bool(spec.git_blob) and "git_blob" not in known
    if need_sha or need_blob:
        known.update(_hash_file(file, need_sha, need_blob))
    return size, known


def _mismatch(spec: FileSpec, size: int, digests: dict) -> str | None:
    """None when the file matches ``spec``; otherwise what differs, expected vs actual."""
    if spec.size is not None and size != spec.size:
        return f"size: expected {spec.size} bytes, got {size} bytes"
    if spec.sha256 and digests.get("sha256") != spec.sha256:
        return f"sha256: expected {spec.sha256}, got {digests.get('sha256')}"
    if spec.git_blob and digests.get("git_blob") != spec.git_blob:
        return f"git blob id: expected {spec.git_blob}, got {digests.get('git_blob')}"
    return None


def verify_file(file, spec: FileSpec) -> str | None:
    """Check ``file`` against ``spec``: None if it matches, else a description of the mismatch.
    Results are remembered by (path, size, mtime), so a second call on an unchanged file is free."""
    file = Path(file)
    size = file.stat().st_size
    if spec.size is not None and size != spec.size:       # cheap check first, no hashing
        return f"size: expected {spec.size} bytes, got {size} bytes"
    size, digests = _digests(file, spec)
    return _mismatch(spec, size, digests)


def _remember(file: Path, digests: dict) -> None:
    key, _ = _stat_key(file)
    _memo.setdefault(key, {}).update(digests)


# --------------------------------------------------------------------------------------------
# fetching


def _label(ds: Dataset, spec: FileSpec) -> str:
    return f"data set {ds.name!r}, file {spec.key!r} ({spec.path})"


def _source_url(ds: Dataset, spec: FileSpec) -> str:
    if spec.archive is not None:
        a = ds.file(spec.archive)
        return f"{a.url} (member {spec.member})"
    return spec.url


def _how_to_get(ds: Dataset, spec: FileSpec, cache: Path) -> str:
    if spec.archive is not None:
        src = ds.file(spec.archive)
        return (f"Download {src.url} and check it ({src.checksum_text()}); then either put the "
                f"unzipped member {spec.member} ({spec.checksum_text()}) at <mirror>/{spec.path}, or "
                f"the archive itself at <mirror>/{src.path}, and set {ENV_MIRROR}=<mirror> (or put "
                f"the archive into the cache at {cache / src.path}); or unset {ENV_OFFLINE} to let "
                f"minibidir download it.")
    return (f"Download {spec.url} and check it ({spec.checksum_text()}), then put it at "
            f"<mirror>/{spec.path} and set {ENV_MIRROR}=<mirror>, or into the cache at "
            f"{cache / spec.path}; or unset {ENV_OFFLINE} to let minibidir download it.")


def _offline_error(ds: Dataset, spec: FileSpec, cache: Path) -> DataError:
    return DataError(f"{_label(ds, spec)} is not in the mirror ({mirror_dir() or f'{ENV_MIRROR} unset'}) "
                     f"nor in the cache ({cache}), and {ENV_OFFLINE} is set, so it will not be "
                     f"downloaded. " + _how_to_get(ds, spec, cache))


def _local(ds: Dataset, spec: FileSpec, *, verify: bool, cache: Path) -> Path | None:
    """The verified mirror or cache copy of ``spec``, or None.  A mirror copy that fails its
    checksum is an error (the mirror is read-only and someone put it there); a cache copy that
    fails is reported and ignored, so that a fresh download replaces it."""
    mirror = mirror_dir()
    if mirror is not None:
        candidate = mirror / spec.path
        if candidate.is_file():
            if not verify:
                return candidate
            bad = verify_file(candidate, spec)
            if bad is None:
                return candidate
            raise DataError(f"{_label(ds, spec)}: the mirrored copy {candidate} does not match the "
                            f"registry ({bad}). Replace it with the file from {_source_url(ds, spec)}, "
                            f"or unset {ENV_MIRROR} to use the cache and download instead.")
    candidate = cache / spec.path
    if candidate.is_file():
        if not verify:
            return candidate
        bad = verify_file(candidate, spec)
        if bad is None:
            return candidate
        log.warning("%s: cached copy %s is corrupt (%s); it will be replaced",
                    _label(ds, spec), candidate, bad)
        if is_offline():
            raise DataError(f"{_label(ds, spec)}: the cached copy {candidate} is corrupt ({bad}) and "
                            f"{ENV_OFFLINE} forbids downloading a new one. Delete it, and "
                            + _how_to_get(ds, spec, cache))
    return None


def _tmp_in(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
    os.close(fd)
    return Path(tmp)


def _download(ds: Dataset, spec: FileSpec, cache: Path, timeout: float) -> Path:
    """Download ``spec.url`` into the cache: temporary file, hash while streaming, check the
    Content-Length, size and checksum, then rename into place.  Nothing is left on failure."""
    target = cache / spec.path
    tmp = _tmp_in(target.parent, target.name)
    label = _label(ds, spec)
    try:
        log.info("downloading %s from %s", label, spec.url)
        sha = hashlib.sha256()
        received = 0
        try:
            opener = urllib.request.build_opener()
            opener.addheaders = [("User-Agent", "minibidir-data/1")]
            with opener.open(spec.url, timeout=timeout) as resp, open(tmp, "wb") as out:
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.strip().isdigit() else None
                if length is not None and spec.size is not None and length != spec.size:
                    raise DataError(f"{label}: the server at {spec.url} announces {length} bytes, "
                                    f"expected {spec.size} bytes; not downloading a different file.")
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (urllib.error.ContentTooShortError, OSError, ValueError) as e:
                        # http.client.IncompleteRead is not an OSError; catch it below
                        raise DataError(f"{label}: download from {spec.url} broke off after "
                                        f"{received} bytes ({type(e).__name__}: {e})") from e
                    if not chunk:
                        break
                    out.write(chunk)
                    sha.update(chunk)
                    received += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except DataError:
            raise
        except urllib.error.HTTPError as e:
            raise DataError(f"{label}: download from {spec.url} failed: HTTP {e.code} {e.reason}") from e
        except urllib.error.URLError as e:
            raise DataError(f"{label}: cannot reach {spec.url}: {e.reason}. If this machine has no "
                            f"network, " + _how_to_get(ds, spec, cache)) from e
        except Exception as e:  # http.client.IncompleteRead, socket timeouts, ...
            raise DataError(f"{label}: download from {spec.url} failed after {received} bytes "
                            f"({type(e).__name__}: {e})") from e
        if length is not None and received != length:
            raise DataError(f"{label}: truncated download from {spec.url}: the server announced "
                            f"{length} bytes (Content-Length) but sent {received} bytes")
        digests = {"sha256": sha.hexdigest()}
        if spec.git_blob:
            digests.update(_hash_file(tmp, False, True))
        bad = _mismatch(spec, received, digests)
        if bad is not None:
            raise DataError(f"{label}: the file downloaded from {spec.url} does not match the "
                            f"registry ({bad}). It was deleted. The file at that URL may have changed "
                            f"or been corrupted in transit; try again, or get a verified copy and "
                            f"set {ENV_MIRROR}.")
        os.replace(tmp, target)
        _remember(target, digests)
        return target
    finally:
        if tmp.exists():
            tmp.unlink()


def _find_member(zf: zipfile.ZipFile, member: str) -> str | None:
    namelist = zf.namelist()
    if member in namelist:
        return member
    base = member.rsplit("/", 1)[-1]
    hits = [n for n in namelist if n.rsplit("/", 1)[-1] == base]
    return hits[0] if len(hits) == 1 else None


def _extract(ds: Dataset, archive_spec: FileSpec, archive: Path, cache: Path) -> None:
    """Extract every registered member of ``archive`` into the cache, each through a temporary
    file that is checked against its checksum and then renamed into place."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DataError(f"data set {ds.name!r}: {archive} is not a valid zip file ({e})") from e
    with zf:
        for spec in ds.members_of(archive_spec.key):
            target = cache / spec.path
            if target.is_file() and verify_file(target, spec) is None:
                continue
            name = _find_member(zf, spec.member)
            if name is None:
                raise DataError(f"{_label(ds, spec)}: the archive {archive} (from {archive_spec.url}) "
                                f"has no member {spec.member!r}; it holds: {', '.join(zf.namelist())}")
            tmp = _tmp_in(target.parent, target.name)
            try:
                sha = hashlib.sha256()
                size = 0
                with zf.open(name) as src, open(tmp, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        sha.update(chunk)
                        size += len(chunk)
                digests = {"sha256": sha.hexdigest()}
                if spec.git_blob:
                    digests.update(_hash_file(tmp, False, True))
                bad = _mismatch(spec, size, digests)
                if bad is not None:
                    raise DataError(f"{_label(ds, spec)}: member {name!r} of {archive} (from "
                                    f"{archive_spec.url}) does not match the registry ({bad}).")
                os.replace(tmp, target)
                _remember(target, digests)
            except zipfile.BadZipFile as e:
                raise DataError(f"{_label(ds, spec)}: cannot read member {name!r} of {archive}: {e}") from e
            finally:
                if tmp.exists():
                    tmp.unlink()


def fetch(name: str | Dataset, file: str | None = None, *, timeout: float | None = None) -> Path:
    """The local path of a verified data file: from the mirror, the cache, or downloaded once into
    the cache.  ``file`` is a key (``"train"``) or a file name; it may be left out for a data set
    with one default file.  Raises :class:`DataError` with what went wrong and how to fix it."""
    ds = get(name)
    if file is None:
        keys = ds.default_keys()
        if len(keys) != 1:
            raise DataError(f"data set {ds.name!r} has several files ({', '.join(ds.keys())}): "
                            f"pass file=..., or use fetch_all({ds.name!r})")
        file = keys[0]
    spec = ds.file(file)
    cache = cache_dir()
    found = _local(ds, spec, verify=True, cache=cache)
    if found is not None:
        return found
    if spec.archive is not None:
        archive_spec = ds.file(spec.archive)
        if is_offline() and not available(ds, archive_spec.key):
            raise _offline_error(ds, spec, cache)
        archive = fetch(ds, archive_spec.key, timeout=timeout)
        _extract(ds, archive_spec, archive, cache)
        return cache / spec.path
    if is_offline():
        raise _offline_error(ds, spec, cache)
    return _download(ds, spec, cache, DEFAULT_TIMEOUT if timeout is None else timeout)


def path(name: str | Dataset, file: str | None = None, **kwargs) -> Path:
    """Same as :func:`fetch`: ``data.path("ud_english_ewt", "train")``."""
    return fetch(name, file, **kwargs)


def fetch_all(name: str | Dataset, *, include_optional: bool = False, **kwargs) -> dict[str, Path]:
    """Fetch every default file of a data set (and the optional ones if asked): {key: path}."""
    ds = get(name)
    keys = ds.keys() if include_optional else ds.default_keys()
    return {k: fetch(ds, k, **kwargs) for k in keys}


def available(name: str | Dataset, file: str | None = None, *, verify: bool = False) -> bool:
    """Whether a file (or all default files) is in the mirror or the cache, without downloading.
    An archive member counts as available when its archive is.  Sizes are always checked;
    checksums too with ``verify=True`` (a mismatch then gives False instead of an error)."""
    try:
        ds = get(name)
        specs = [ds.file(file)] if file is not None else [ds.file(k) for k in ds.default_keys()]
    except DataError:
        return False
    cache = cache_dir()

    def ok(spec):
        try:
            p = _local(ds, spec, verify=False, cache=cache)
            if p is not None:
                if spec.size is not None and p.stat().st_size != spec.size:
                    p = None
                elif verify and verify_file(p, spec) is not None:
                    p = None
            if p is not None:
                return True
            return spec.archive is not None and ok(ds.file(spec.archive))
        except (OSError, DataError):
            return False

    return all(ok(s) for s in specs)


# --------------------------------------------------------------------------------------------
# the data sets (sources, sizes and checksums as listed in the data mirror's MANIFEST.md)


def _files(license: str, *specs: dict) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(license=license, **s) for s in specs)


_UD_EWT = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/r2.16/"
_UD_ZH = "https://raw.githubusercontent.com/UniversalDependencies/UD_Chinese-GSDSimp/r2.16/"
_NLTK = ("https://raw.githubusercontent.com/nltk/nltk_data/"
         "5db857e6f7df11eabb5e5665836db9ec8df07e28/packages/corpora/")
_WIKITEXT = ("https://raw.githubusercontent.com/pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/"
             "word_language_model/data/wikitext-2/")
_CHAR_RNN = ("https://raw.githubusercontent.com/karpathy/char-rnn/"
             "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/")

register(Dataset(
    name="ud_english_ewt",
    license="CC BY-SA 4.0",
    description="Universal Dependencies English Web Treebank, UD v2.16 (CoNLL-U): 12,544 / 2,001 / "
                "2,077 sentences and 204,577 / 25,147 / 25,094 words in train / dev / test.",
    homepage="https://universaldependencies.org/treebanks/en_ewt/",
    citation="Silveira et al., A Gold Standard Dependency Corpus for English, LREC 2014.",
    files=_files(
        "CC BY-SA 4.0",
        dict(key="train", path="ud_english_ewt/en_ewt-ud-train.conllu", url=_UD_EWT + "en_ewt-ud-train.conllu",
             size=14203025, sha256="3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b"),
        dict(key="dev", path="ud_english_ewt/en_ewt-ud-dev.conllu", url=_UD_EWT + "en_ewt-ud-dev.conllu",
             size=1805545, sha256="531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6"),
        dict(key="test", path="ud_english_ewt/en_ewt-ud-test.conllu", url=_UD_EWT + "en_ewt-ud-test.conllu",
             size=1804515, sha256="e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd"),
        dict(key="license", path="ud_english_ewt/LICENSE.txt", url=_UD_EWT + "LICENSE.txt", default=False,
             size=20014, sha256="b3d1b0f4c6ae151f7eb78738f46ebd5ee140f8a7f76501ba26af123140d35ae7"),
    ),
))

register(Dataset(
    name="rt_polarity",
    license="CC BY 4.0",
    description="Pang & Lee sentence polarity data set v1.0 (rt-polarity), NLTK's UTF-8 packaging: "
                "5,331 positive and 5,331 negative movie-review snippets, one per line, no official split.",
    homepage="http://www.cs.cornell.edu/people/pabo/movie-review-data/",
    citation="Pang & Lee, Seeing stars: exploiting class relationships for sentiment categorization "
             "with respect to rating scales, ACL 2005.",
    files=_files(
        "CC BY 4.0",
        dict(key="archive", path="rt_polarity/sentence_polarity.zip", url=_NLTK + "sentence_polarity.zip",
             size=490256, sha256="6e1ed4405b65c7eabf1d199a7f7c437091ac21da0ea7467b410a74062574566b",
             git_blob="e300f227da3cb7f7671c36a5456578557af62a3f", default=False),
        dict(key="pos", path="rt_polarity/rt-polarity.pos", archive="archive",
             member="sentence_polarity/rt-polarity.pos",
             size=626334, sha256="c2dc6b2f55bcf725725372916287cc3f8f9b19402edaa9167de5287cb3ade421"),
        dict(key="neg", path="rt_polarity/rt-polarity.neg", archive="archive",
             member="sentence_polarity/rt-polarity.neg",
             size=612441, sha256="614274f81185a850e5a88d533d4679f916d6f62e9af6f0b4ec71fb94bf466ea5"),
        dict(key="readme", path="rt_polarity/README.txt", archive="archive", default=False,
             member="sentence_polarity/README.txt",
             size=2352, sha256="94a2b97849746338d5f9533cdd8086ca11ffe6de168ec9f3d64d662fa733ecd3"),
    ),
))

register(Dataset(
    name="wikitext2",
    license="CC BY-SA 3.0",
    description="WikiText-2 (v1, tokenised, <unk> version) from PyTorch's word_language_model example: "
                "valid 217,646 and test 245,569 tokens (one <eos> per line included). train is optional: "
                "only its git blob id is known, and it is verified by that.",
    homepage="https://arxiv.org/abs/1609.07843",
    citation="Merity, Xiong, Bradbury & Socher, Pointer Sentinel Mixture Models, 2016.",
    files=_files(
        "CC BY-SA 3.0",
        dict(key="valid", path="wikitext2/valid.txt", url=_WIKITEXT + "valid.txt",
             size=1121681, sha256="f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        dict(key="test", path="wikitext2/test.txt", url=_WIKITEXT + "test.txt",
             size=1256449, sha256="d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
        dict(key="train", path="wikitext2/train.txt", url=_WIKITEXT + "train.txt", default=False,
             git_blob="2d84b35af79e411d73ea7cae83c73964c6ac83b4"),
    ),
))

register(Dataset(
    name="tiny_shakespeare",
    license="public domain (text); MIT (char-rnn repository)",
    description="Karpathy's tiny-shakespeare (char-rnn): 1,115,394 characters, 65 distinct, 40,000 lines.",
    homepage="https://github.com/karpathy/char-rnn",
    files=_files(
        "public domain (text); MIT (char-rnn repository)",
        dict(key="input", path="tiny_shakespeare/input.txt", url=_CHAR_RNN + "input.txt",
             size=1115394, sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    ),
))

register(Dataset(
    name="state_union",
    license="public domain",
    description="C-Span State of the Union addresses 1945-2006 (NLTK), one zip kept zipped: 65 speeches, "
                "349,711 whitespace words; six files are ISO-8859-1.",
    homepage="https://www.nltk.org/nltk_data/",
    files=_files(
        "public domain",
        dict(key="archive", path="state_union/state_union.zip", url=_NLTK + "state_union.zip",
             size=808757, sha256="366c1dc82b2abf896f42b2ec50ba802a0141a29f75d29ca48a7a243ce5bfbe8d"),
    ),
))

register(Dataset(
    name="ud_chinese_gsdsimp",
    license="CC BY-SA 4.0",
    description="Universal Dependencies Chinese GSDSimp (Simplified), UD v2.16, dev and test only: "
                "500 / 500 sentences, 12,663 / 12,012 words.",
    homepage="https://universaldependencies.org/treebanks/zh_gsdsimp/",
    files=_files(
        "CC BY-SA 4.0",
        dict(key="dev", path="ud_chinese_gsdsimp/zh_gsdsimp-ud-dev.conllu", url=_UD_ZH + "zh_gsdsimp-ud-dev.conllu",
             size=1180003, sha256="342a2969df6d6d08bdc25dbc067c93c86ab3099bb054a9921ae7067cbc2c53ad"),
        dict(key="test", path="ud_chinese_gsdsimp/zh_gsdsimp-ud-test.conllu",
             url=_UD_ZH + "zh_gsdsimp-ud-test.conllu",
             size=1120900, sha256="573f59b799b499a920d2d5bdc0e3c1dbd7bcacf86bdece4334ecbd03e21b6150"),
        dict(key="license", path="ud_chinese_gsdsimp/LICENSE.txt", url=_UD_ZH + "LICENSE.txt", default=False,
             size=202, sha256="899b1804a12ebc090b96339614eede1b64b686721b650a71430b55b5235f7f79"),
    ),
))
