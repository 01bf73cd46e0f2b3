"""facecli: batch facial behaviour measurement for images and videos.

For analysis (imported on first use, so the command line stays quick to start)::

    facecli.read(path, columns=None, filters=None, pyfeat=False)  # outputs -> one pandas DataFrame
    facecli.dataset(path)     # the same files as one pyarrow dataset (DuckDB, streaming scans)
    facecli.columns           # column groups: AUS, EMOTIONS, POSE, GAZE, LANDMARKS, MESH, IDENTITY, ...
    facecli.to_pyfeat(df)     # py-feat 2.1.5's columns and signs (facecli.pyfeat)
"""

__version__ = "0.1.0"

_LAZY = {
    "read": ("facecli.results", "read"),
    "dataset": ("facecli.results", "dataset"),
    "ReadError": ("facecli.results", "ReadError"),
    "to_pyfeat": ("facecli.pyfeat", "to_pyfeat"),
    "to_fex": ("facecli.pyfeat", "to_fex"),
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in ("columns", "pyfeat", "results"):
        return importlib.import_module(f"facecli.{name}")
    raise AttributeError(f"module 'facecli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "columns", "pyfeat", "results"])
