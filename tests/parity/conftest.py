"""Shared fixtures for parity tests against reference implementations.

Each reference (py-feat 2.1.5, mediapipe 0.10.21) lives in its own virtual environment, so
the reference side runs as a subprocess: a small script under ``tests/parity/ref/`` reads
inputs (weights in the published layout, images, tensors saved with safetensors) from a
temporary folder and writes its outputs there for the test to compare.

The interpreter is found from an environment variable or a venv at the repository root:
``FACECLI_PYFEAT_PYTHON`` (default ``.ref/bin/python``) and ``FACECLI_MEDIAPIPE_PYTHON``
(default ``.mp/bin/python``). Tests skip when the interpreter is absent or cannot import
the reference package.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REF_SCRIPTS = Path(__file__).resolve().parent / "ref"


@functools.lru_cache(maxsize=None)
def _find_python(env_var: str, default: str, module: str) -> str | None:
    candidate = os.environ.get(env_var) or str(REPO / default)
    if not Path(candidate).exists():
        return None
    probe = subprocess.run(
        [candidate, "-c", f"import {module}"],
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    return candidate if probe.returncode == 0 else None


def run_reference(python: str, script: str, *args: str | os.PathLike, timeout: float = 900) -> str:
    """Run ``tests/parity/ref/<script>`` with the reference interpreter; return its stdout.

    Raises AssertionError with the script's stderr when it fails.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REF_SCRIPTS)}
    env.pop("PYTHONHOME", None)
    proc = subprocess.run(
        [python, str(REF_SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"reference script {script} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _absent(what: str) -> None:
    """Skip, or fail where CI demands the references (FACECLI_REQUIRE_REFERENCES=1)."""
    message = f"{what} reference environment not found (make ref-envs)"
    if os.environ.get("FACECLI_REQUIRE_REFERENCES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pyfeat_python() -> str:
    python = _find_python("FACECLI_PYFEAT_PYTHON", ".ref/bin/python", "feat")
    if python is None:
        _absent("py-feat 2.1.5")
    return python


@pytest.fixture(scope="session")
def mediapipe_python() -> str:
    python = _find_python("FACECLI_MEDIAPIPE_PYTHON", ".mp/bin/python", "mediapipe")
    if python is None:
        _absent("mediapipe 0.10.21")
    return python


if sys.version_info < (3, 10):  # pragma: no cover
    raise RuntimeError("facecli tests need Python 3.10+")
