"""Run inside py-feat's environment: time Detectorv2.detect on decoded frames with weights from a folder.

Usage: pyfeat_detect_timing.py FRAMES.npy WEIGHTS_DIR BATCH_SIZE DEVICE THREADS [OUT.csv] [--serve]
    [--threshold=T]
(FRAMES.npy: uint8 [N, 3, H, W] RGB; tests/parity/ref must be on PYTHONPATH for pyfeat_local.)
One untimed warm-up call on the first batch, then one timed pass over all frames; fp32 (py-feat's
default, amp=False), no progress bar. Prints one JSON line {"seconds", "frames", "faces"}; with
OUT.csv also writes the rows py-feat produced. With ``--serve`` the detector stays loaded and
every line read from standard input ("go") times one more pass, answered by one JSON line, so a
caller can interleave py-feat's passes with its own on a machine whose speed drifts.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pyfeat_local import detectorv2

args = [a for a in sys.argv[1:] if not a.startswith("--")]
serve = "--serve" in sys.argv
threshold = next((float(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--threshold=")), 0.5)
frames_path, weights, batch_size, device, threads = args[0], Path(args[1]), int(args[2]), args[3], int(args[4])
out_csv = args[5] if len(args) > 5 else None
torch.set_num_threads(threads)
detector = detectorv2(weights, device=device)
# py-feat's RetinaFace drops boxes under its own threshold (0.5) before detect()'s threshold applies:
# a lower threshold (random weights tuned to one face per frame) must reach it too
if threshold < getattr(detector.face_detector, "detection_threshold", threshold):
    detector.face_detector.detection_threshold = threshold
frames = torch.from_numpy(np.load(frames_path))
options = {"data_type": "tensor", "batch_size": batch_size, "progress_bar": False, "face_detection_threshold": threshold}
detector.detect(frames[:batch_size], **options)  # warm-up


def one_pass() -> dict:
    start = time.perf_counter()
    fex = detector.detect(frames, **options)
    seconds = time.perf_counter() - start
    if out_csv:
        fex.to_csv(out_csv, index=False)
    return {"seconds": seconds, "frames": int(fex["frame"].nunique()), "faces": int((fex["FaceScore"] > 0).sum())}


if serve:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        print(json.dumps(one_pass()), flush=True)
else:
    print(json.dumps(one_pass()))
