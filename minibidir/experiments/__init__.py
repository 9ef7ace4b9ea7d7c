"""Experiments that reproduce the documents' claims on real data (each module runs one study;
its ``QUICK`` setting is small enough for the test suite and the notebooks).

Modules are imported on first use (``minibidir.experiments.pos_tagging``), so that
``python -m minibidir.experiments.pos_tagging`` runs the module once, as ``__main__``."""
import importlib


def __getattr__(name):
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
