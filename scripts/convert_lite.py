"""Convert the lite model set's original files into facecli's packaged safetensors.

    python scripts/convert_lite.py --src /path/to/lite-sources --out facecli/models/lite/weights [STEP ...]

Steps come from modules under ``scripts/lite_convert/``: a module that defines
``STEPS = {"name": convert}`` with ``convert(src: Path, out: Path) -> list[Path]`` adds its steps.
With no step names, every step runs. Dev-only: needs ``tflite`` / ``h5py``, not part of the package.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

Step = Callable[[Path, Path], list[Path]]


def discover_steps() -> dict[str, Step]:
    """Every ``STEPS`` entry of the modules in ``lite_convert``, by name."""
    import lite_convert

    steps: dict[str, Step] = {}
    for info in sorted(pkgutil.iter_modules(lite_convert.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"lite_convert.{info.name}")
        for name, fn in getattr(module, "STEPS", {}).items():
            if name in steps:
                raise RuntimeError(f"step {name!r} defined twice (lite_convert.{info.name})")
            steps[name] = fn
    return steps


def main(argv: list[str] | None = None) -> int:
    steps = discover_steps()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="folder with the original files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (facecli/models/lite/weights)")
    parser.add_argument("steps", nargs="*", metavar="STEP", help=f"steps to run (default: all): {', '.join(sorted(steps))}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.steps) - set(steps))
    if unknown:
        parser.error(f"unknown step {', '.join(unknown)}; known: {', '.join(sorted(steps))}")
    for name in args.steps or sorted(steps):
        for path in steps[name](args.src, args.out):
            print(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
