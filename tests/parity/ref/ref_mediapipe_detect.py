"""Reference side of the BlazeFace parity test (runs in the mediapipe 0.10.21 environment).

Usage: ref_mediapipe_detect.py IMAGES_IN RESULTS_OUT

IMAGES_IN (.npz) holds uint8 RGB images [H, W, 3] named ``NAME``. For each image and each
mediapipe face detection model (``model_selection`` 0 = short range, 1 = full range)
RESULTS_OUT (.npz) receives, with VARIANT ``short`` / ``full``:

- ``VARIANT__NAME__boxes`` [N, 4] float64 (x1, y1, x2, y2) pixels,
- ``VARIANT__NAME__scores`` [N],
- ``VARIANT__NAME__keypoints`` [N, 6, 2] (x, y) pixels,

in mediapipe's output order. Uses the model files inside the mediapipe wheel; downloads nothing.
In 0.10.21 ``min_detection_confidence`` does not reach the graphs, which keep their own score
thresholds (0.5 short range, 0.6 full range); it is passed as 0.5 for the record only.
"""

from __future__ import annotations

import sys

import numpy as np


def detect(solution, image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    result = solution.process(np.ascontiguousarray(image))
    boxes, scores, points = [], [], []
    for det in result.detections or []:
        box = det.location_data.relative_bounding_box
        boxes.append([box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h])
        scores.append(det.score[0])
        points.append([[p.x * w, p.y * h] for p in det.location_data.relative_keypoints])
    return {
        "boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
        "scores": np.asarray(scores, np.float64),
        "keypoints": np.asarray(points, np.float64).reshape(-1, 6, 2),
    }


def main(images_in: str, results_out: str) -> None:
    import mediapipe as mp

    images = dict(np.load(images_in))
    out: dict[str, np.ndarray] = {}
    for selection, variant in ((0, "short"), (1, "full")):
        with mp.solutions.face_detection.FaceDetection(
            model_selection=selection, min_detection_confidence=0.5
        ) as solution:
            for name, image in images.items():
                for key, value in detect(solution, image).items():
                    out[f"{variant}__{name}__{key}"] = value
    np.savez(results_out, **out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
