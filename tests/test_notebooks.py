"""Every chapter notebook runs top to bottom (quick settings); a failing cell fails the suite.

The notebooks are executed by the session's ``notebook_runner`` (tests/conftest.py), which the
book test shares, so each runs once per session.
"""
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_chapters_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:2] == ["00_introduction", "01_autograd"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, notebook_runner):
    executed = notebook_runner.run(str(path))
    assert Path(executed).is_file()
