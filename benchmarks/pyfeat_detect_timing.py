"""Run inside py-feat's environment: time Detectorv2.detect on decoded frames with weights from a folder.

Usage: pyfeat_detect_timing.py FRAMES.npy WEIGHTS_DIR BATCH_SIZE DEVICE THREADS [OUT.csv]
(FRAMES.npy: uint8 [N, 3, H, W] RGB; tests/parity/ref must be on PYTHONPATH for pyfeat_local.)
One untimed warm-up call on the first batch, then one timed pass over all frames; fp32 (py-feat's
default, amp=False), no progress bar. Prints one JSON line {"seconds", "frames", "faces"}; with
OUT.csv also writes the rows py-feat produced.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pyfeat_local import detectorv2

frames_path, weights, batch_size, device, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
out_csv = sys.argv[6] if len(sys.argv) > 6 else None
torch.set_num_threads(threads)
detector = detectorv2(weights, device=device)
frames = torch.from_numpy(np.load(frames_path))
detector.detect(frames[:batch_size], data_type="tensor", batch_size=batch_size, progress_bar=False)  # warm-up
start = time.perf_counter()
fex = detector.detect(frames, data_type="tensor", batch_size=batch_size, progress_bar=False)
seconds = time.perf_counter() - start
if out_csv:
    fex.to_csv(out_csv, index=False)
print(json.dumps({"seconds": seconds, "frames": int(fex["frame"].nunique()), "faces": int((fex["FaceScore"] > 0).sum())}))
