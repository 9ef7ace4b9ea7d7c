"""The book builds offline from notebooks/, executes every notebook, and typesets its math.

``python book/build.py --executed DIR`` is run into a temporary folder on the notebooks as the
session's runner executed them (``MINIBIDIR_QUICK=1``; see tests/conftest.py), and a small
book with a failing cell checks that the executing build (the default) fails.
Then every chapter page is opened in headless Chromium, and each page that holds
math must have been typeset by the bundled MathJax with no MathJax error.

Chromium is needed for the math check: without it those tests are skipped, except
on CI (``CI`` set to a true value), where they fail. Deselect the whole module with
``pytest -m "not book"``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.book

REPO_ROOT = Path(__file__).resolve().parent.parent
BOOK_DIR = REPO_ROOT / "book"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
BUILD_SCRIPT = BOOK_DIR / "build.py"

CELL_TIMEOUT_S = 900  # per cell, quick settings
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]

# An element Sphinx marks as math: inline \( \), display \[ \], amsmath, text/latex outputs.
MATH_ELEMENT = re.compile(r'class="[^"]*\bmath\b[^"]*"')
# A resource a page would fetch from the network (links a reader clicks are fine).
EXTERNAL_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//",
    re.IGNORECASE,
)
EXTERNAL_MATHJAX = re.compile(
    r"cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|unpkg\.com|https?://[^\"'\s]*mathjax",
    re.IGNORECASE,
)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))


def _run_build(out: Path, cwd: Path, build_script: Path, executed: Path | None = None
               ) -> subprocess.CompletedProcess:
    tmp = out.parent / f"{out.name}-tmp"  # Sphinx writes its crash logs to TMPDIR
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MINIBIDIR_QUICK="1", TMPDIR=str(tmp))
    extra = ["--executed", str(executed)] if executed is not None else []
    return subprocess.run(
        [sys.executable, str(build_script), "--out", str(out), "--quick",
         "--timeout", str(CELL_TIMEOUT_S), *extra],
        check=False, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, encoding="utf-8", errors="replace",
    )


def _tail(text: str, lines: int = 150) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory, notebook_runner) -> Path:
    """The book built from the notebooks as the session's runner executed them (each notebook
    runs once per session; tests/test_notebooks.py reports a failing one by name)."""
    pytest.importorskip("jupyter_book", reason="install requirements-dev.txt (jupyter-book<2)")
    executed = {Path(notebook_runner.run(str(p))).parent for p in _notebooks()}
    out = tmp_path_factory.mktemp("book")
    result = _run_build(out, REPO_ROOT, BUILD_SCRIPT, executed=executed.pop())
    assert result.returncode == 0, f"book build failed:\n{_tail(result.stdout)}"
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium is needed to check the book's math: apt-get install chromium"
    if _on_ci():
        pytest.fail(message)
    pytest.skip(message)


def _page(html_dir: Path, notebook: Path) -> Path:
    return html_dir / "notebooks" / f"{notebook.stem}.html"


def test_every_notebook_has_a_page(html_dir):
    notebooks = _notebooks()
    assert notebooks, "no notebooks in notebooks/"
    missing = [nb.name for nb in notebooks if not _page(html_dir, nb).is_file()]
    assert not missing, f"notebooks without a page in the book: {missing}"


def test_pages_need_no_network(html_dir):
    mathjax = html_dir / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file(), "MathJax was not bundled into _static/mathjax/"
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        rel = page.relative_to(html_dir)
        assert not EXTERNAL_MATHJAX.search(text), f"{rel} points at an online MathJax"
        hit = EXTERNAL_RESOURCE.search(text)
        assert hit is None, f"{rel} loads a resource from the network: {hit.group(0)}"
        if MATH_ELEMENT.search(text):
            assert "_static/mathjax/tex-chtml.js" in text, f"{rel} has math but no local MathJax"


def _dump_dom(chromium: str, page: Path, profile: Path) -> str:
    profile.mkdir(parents=True)
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        check=False, capture_output=True, timeout=180,
        text=True, encoding="utf-8", errors="replace",
    )
    assert result.returncode == 0, f"chromium failed on {page.name}:\n{_tail(result.stderr, 30)}"
    return result.stdout


def test_math_is_typeset(chromium, html_dir, tmp_path):
    checked = 0
    for i, notebook in enumerate(_notebooks()):
        page = _page(html_dir, notebook)
        source = page.read_text(encoding="utf-8")
        n_math = len(MATH_ELEMENT.findall(source))
        if n_math == 0:
            continue
        dom = _dump_dom(chromium, page, tmp_path / f"profile{i}")
        n_typeset = len(re.findall(r"<mjx-container\b", dom))
        errors = [re.search(r'data-mjx-error="([^"]*)"', tag).group(1)
                  if "data-mjx-error" in tag else tag
                  for tag in re.findall(r"<mjx-merror\b[^>]*>", dom)]
        assert n_typeset > 0, f"{page.name}: MathJax typeset nothing (did it load?)"
        assert not errors, f"{page.name}: MathJax errors: {errors}"
        assert n_typeset >= n_math, (
            f"{page.name}: {n_math} math elements but only {n_typeset} typeset")
        checked += 1
    assert checked > 0, "no page of the book contains math"


def _notebook_json(*cells: tuple[str, str]) -> str:
    def cell(kind, text):
        c = {"cell_type": kind, "metadata": {}, "source": text}
        if kind == "code":
            c.update(execution_count=None, outputs=[])
        return c
    return json.dumps({
        "cells": [cell(k, t) for k, t in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    })


def test_failing_cell_fails_the_build(tmp_path):
    """A copy of book/ with a two-notebook book whose second notebook raises."""
    pytest.importorskip("jupyter_book", reason="install requirements-dev.txt (jupyter-book<2)")
    repo = tmp_path / "repo"
    (repo / "book").mkdir(parents=True)
    for name in ("build.py", "_config.yml"):
        shutil.copy(BOOK_DIR / name, repo / "book" / name)
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "00_introduction.ipynb").write_text(
        _notebook_json(("markdown", "# 引言\n\n$x^2$"), ("code", "print('fine')")),
        encoding="utf-8")
    (repo / "notebooks" / "01_broken.ipynb").write_text(
        _notebook_json(("markdown", "# 坏"),
                       ("code", "raise ValueError('deliberately broken cell')"),
                       ("code", "print('never reached')")),
        encoding="utf-8")
    result = _run_build(tmp_path / "out", repo, repo / "book" / "build.py")
    assert result.returncode != 0, f"the build passed despite a failing cell:\n{_tail(result.stdout)}"
    assert "deliberately broken cell" in result.stdout
