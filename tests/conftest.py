"""Shared test configuration: backends, GPU marker handling, seeding, hypothesis profiles.

* ``xp_backend`` runs a test once per array backend: NumPy, the CPU stand-in for CuPy
  (which refuses to mix host and device arrays, so an op that calls ``np.`` on device
  data fails here), and the real CuPy backend (marked ``gpu``; skipped without a device).
  It switches :mod:`minibidir.backend` for the duration of the test and yields the array
  module (``numpy``, ``minibidir.standin`` or ``cupy``).
* ``cupy_backend`` is the GPU-only variant, for tests that make sense only on a device.
* Every test marked ``gpu`` (directly, or through a ``cupy`` parameter) is skipped cleanly
  when ``minibidir.backend.cupy_available()`` is False.
* Hypothesis: a modest "ci" profile by default (``HYPOTHESIS_PROFILE=dev`` for more examples).
"""
import os

import numpy as np
import pytest

import minibidir as mb
from minibidir import backend as B

# Real data sets are read from the local mirror beside the checkout when nothing else is set
# (CI exports the same path); tests that need a data set skip when it is absent.
_MIRROR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data")
if "MINIBIDIR_DATA_MIRROR" not in os.environ and os.path.isdir(_MIRROR):
    os.environ["MINIBIDIR_DATA_MIRROR"] = os.path.normpath(_MIRROR)

try:
    from hypothesis import settings, HealthCheck
except ImportError:          # hypothesis is a test-only dependency; its tests skip without it
    settings = None

if settings is not None:
    settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True, database=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=100, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: The backends every op test runs under.  ``cupy`` carries the ``gpu`` marker, so
#: ``-m "not gpu"`` deselects it and ``-m gpu`` selects only the device runs.
BACKENDS = ["numpy", "standin", pytest.param("cupy", marks=pytest.mark.gpu)]

_NO_GPU = "CuPy is not installed or no GPU is visible"


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not B.cupy_available():
        pytest.skip(_NO_GPU)


def _switch(name):
    if name == "cupy" and not B.cupy_available():
        pytest.skip(_NO_GPU)
    return B.backend(name)


@pytest.fixture(params=BACKENDS)
def xp_backend(request):
    """Run the test under each backend; yields that backend's array module."""
    with _switch(request.param):
        yield B.array_module(request.param)


@pytest.fixture(params=[pytest.param("cupy", marks=pytest.mark.gpu)])
def cupy_backend(request):
    """The real CuPy backend only (skipped without a GPU); yields the ``cupy`` module."""
    with _switch(request.param):
        yield B.array_module(request.param)


@pytest.fixture(autouse=True)
def manual_seed():
    """Every test starts from the same generator state (library and NumPy's global one),
    and leaves the backend choice and the default dtype as it found them."""
    mb.manual_seed(0)
    np.random.seed(0)
    dtype = mb.get_default_dtype()
    with B.backend(B.get_backend()):      # restores the backend (and what "cuda" means) on exit
        yield 0
    mb.set_default_dtype(dtype)


# ----------------------------------------------------------------------------- notebooks

NOTEBOOK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


class NotebookRunner:
    """Executes each chapter notebook at most once per test session (quick settings), keeps
    the executed copy in a session folder, and remembers failures.

    ``tests/test_notebooks.py`` asserts that every notebook runs; ``tests/test_book.py`` builds
    the book from the same executed copies instead of running every notebook a second time.
    The kernel runs with ``MINIBIDIR_QUICK=1`` and without ``MPLBACKEND`` (its inline backend,
    so that the figures are in the outputs and appear in the book).
    """

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.results = {}                          # name -> None (ran) or the exception

    def run(self, path):
        import nbclient
        import nbformat
        name = os.path.basename(path)
        if name not in self.results:
            saved = {k: os.environ.get(k) for k in ("MINIBIDIR_QUICK", "MPLBACKEND")}
            os.environ["MINIBIDIR_QUICK"] = "1"
            os.environ.pop("MPLBACKEND", None)
            try:
                nb = nbformat.read(path, as_version=4)
                client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                                 resources={"metadata": {"path": os.path.dirname(path)}})
                client.execute()              # raises CellExecutionError with the failing cell's traceback
                errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                          if o.get("output_type") == "error"]
                if errors:
                    raise AssertionError(f"{name}: error outputs {errors}")
                nbformat.write(nb, os.path.join(self.out_dir, name))
                self.results[name] = None
            except Exception as e:           # remembered, so the other test reports it too
                self.results[name] = e
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        if self.results[name] is not None:
            raise self.results[name]
        return os.path.join(self.out_dir, name)


@pytest.fixture(scope="session")
def notebook_runner(tmp_path_factory):
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    return NotebookRunner(str(tmp_path_factory.mktemp("executed_notebooks")))
