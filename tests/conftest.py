"""Fixtures shared by the whole suite: random feat-v2 weights in the published layout, test media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch, tmp_path_factory):
    """Tests never reach the network or the user's caches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf_home"))
    monkeypatch.delenv("FACECLI_WEIGHTS_DIR", raising=False)


@pytest.fixture(scope="session")
def featv2_weights(tmp_path_factory) -> Path:
    """A folder laid out as DIR/<repo_id>/<filename> with random weights for every feat-v2 file.

    RetinaFace is tamed so that natural images give a handful of detections; the multitask
    file carries the v2.8-style config (eye ROI, 6D pose input, 180 gaze bins) in its metadata.
    """
    from tests.support.identity_weights import write_random_arcface, write_random_facenet
    from tests.support.multitask_weights import V28_CONFIG, write_random_multitask
    from tests.support.retinaface_weights import write_controlled_retinaface

    root = tmp_path_factory.mktemp("featv2_weights")
    for sub in ("retinaface_r34", "face_multitask_v2", "arcface_r50", "facenet"):
        (root / "py-feat" / sub).mkdir(parents=True)
    write_controlled_retinaface(root / "py-feat/retinaface_r34/model.safetensors", seed=0)
    write_random_multitask(root / "py-feat/face_multitask_v2/face_multitask_v28.safetensors", V28_CONFIG, seed=0)
    write_random_arcface(root / "py-feat/arcface_r50/arcface_r50.safetensors", seed=0)
    write_random_facenet(root / "py-feat/facenet/facenet_20180402_114759_vggface2.pth", seed=0)
    return root


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.camera())


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> Path:
    """Encode HxWx3 uint8 frames with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
