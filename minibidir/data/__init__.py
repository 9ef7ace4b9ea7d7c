"""Named data sets: canonical URLs, checksums, a cache, a local mirror, and readers.

Data policy
-----------
* Every data set is registered under a name (``ud_english_ewt``, ``rt_polarity``, ``wikitext2``,
  ``tiny_shakespeare``, ``state_union``, ``ud_chinese_gsdsimp``) with, for each file, its
  canonical URL (a pinned commit or release tag, so the bytes cannot change under us), its size,
  its sha256 (or, where only that is published, its git blob id) and its license.
  ``info(name)`` shows them; the data is never part of the repository.
* ``fetch(name, file)`` returns a local path to a **verified** copy.  It looks in the mirror
  first, then in the cache, and only then downloads from the canonical URL into the cache.
* **Mirror**: ``MINIBIDIR_DATA_MIRROR`` names a read-only directory with the same layout as the
  cache (``ud_english_ewt/en_ewt-ud-train.conllu``, ...).  Tests and CI point it at
  ``../shared/data``.  Mirrored files are checked too; the check is remembered by
  (path, size, mtime) for the life of the process.
* **Cache**: ``MINIBIDIR_DATA_CACHE``, default ``~/.cache/minibidir``.  A download goes to a
  temporary file in the cache, is checked against the Content-Length, the size and the checksum,
  and is renamed into place only then; on any failure the temporary file is deleted, so the cache
  never holds a half-written or unverified file.  Files inside an archive (the polarity zip) are
  extracted from the verified archive the same way and checked against their own sha256.
* **Offline**: ``MINIBIDIR_OFFLINE=1`` forbids downloads; a missing file then raises a
  :class:`DataError` that gives its URL and checksum and says how to set up a mirror.
* ``available(name, file)`` tells, without downloading, whether a file is mirrored or cached
  (tests use it to skip cleanly).

Readers: :func:`read_conllu` / :func:`load_ud` (integer-ID rows only), :func:`read_wikitext`,
:func:`wikitext_tokens`, :func:`read_tiny_shakespeare`, :func:`read_state_union`,
:func:`read_polarity`, and :func:`split_indices` for a seeded train/dev/test split.
"""
from .registry import (DataError, FileSpec, Dataset, register, unregister, get, names, fetch,
                       fetch_all, path, available, mirror_dir, cache_dir, is_offline, verify_file,
                       git_blob_sha1, sha256_file, clear_verification_memo)
from .conllu import Sentence, read_conllu, load_ud, UPOS_TAGS
from .text import (read_lines, read_wikitext, wikitext_tokens, tokens_with_eos,
                   read_tiny_shakespeare, read_state_union, read_polarity, split_indices)

__all__ = ["DataError", "FileSpec", "Dataset", "register", "unregister", "get", "names", "fetch",
           "fetch_all", "path", "available", "info", "mirror_dir", "cache_dir", "is_offline",
           "verify_file", "git_blob_sha1", "sha256_file", "clear_verification_memo",
           "Sentence", "read_conllu", "load_ud", "UPOS_TAGS",
           "read_lines", "read_wikitext", "wikitext_tokens", "tokens_with_eos",
           "read_tiny_shakespeare", "read_state_union", "read_polarity", "split_indices"]


def info(name=None) -> str:
    """A readable summary of one data set (or all): description, license, and every file's
    path, URL, size and checksum, and whether it is available locally."""
    datasets = [get(name)] if name is not None else [get(n) for n in names()]
    out = []
    for ds in datasets:
        out.append(f"{ds.name}: {ds.description}")
        out.append(f"  license: {ds.license}" + (f"; {ds.homepage}" if ds.homepage else ""))
        if ds.citation:
            out.append(f"  cite: {ds.citation}")
        for f in ds.files:
            where = f.url if f.archive is None else f"member {f.member} of {ds.file(f.archive).path}"
            flag = "available" if available(ds, f.key) else "not local"
            opt = "" if f.default else ", optional"
            out.append(f"  {f.key:8s} {f.path}  ({f.checksum_text()}{opt}; {flag})\n           {where}")
    return "\n".join(out)
