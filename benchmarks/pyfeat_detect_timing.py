"""Run inside py-feat's environment: time Detectorv2.detect on decoded frames with weights from a folder.

Usage: pyfeat_detect_timing.py FRAMES.npy WEIGHTS_DIR BATCH_SIZE DEVICE THREADS
(FRAMES.npy: uint8 [N, 3, H, W] RGB)
Prints one JSON line: {"seconds": ..., "frames": ..., "faces": ...} (second of two passes).
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

frames_path, weights, batch_size, device, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
torch.set_num_threads(threads)
files = {
    ("py-feat/retinaface_r34", "model.safetensors"): weights / "py-feat/retinaface_r34/model.safetensors",
    ("py-feat/arcface_r50", "arcface_r50.safetensors"): weights / "py-feat/arcface_r50/arcface_r50.safetensors",
}


def local_file(repo_id, filename, *args, **kwargs):
    return str(files[(repo_id, filename)])


import feat.utils  # noqa: E402
import huggingface_hub  # noqa: E402

feat.utils.hf_hub_download_with_fallback = local_file
huggingface_hub.hf_hub_download = local_file
os.environ["FEAT_ARCFACE_R50_PATH"] = str(files[("py-feat/arcface_r50", "arcface_r50.safetensors")])

from feat.detector_v2 import Detectorv2  # noqa: E402

detector = Detectorv2(
    device=device, identity_model="arcface", amp=False,
    multitask_weights=str(weights / "py-feat/face_multitask_v2/face_multitask_v28.safetensors"),
)
frames = torch.from_numpy(np.load(frames_path))
detector.detect(frames, data_type="tensor", batch_size=batch_size, progress_bar=False)  # warm-up
start = time.perf_counter()
fex = detector.detect(frames, data_type="tensor", batch_size=batch_size, progress_bar=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "frames": int(fex["frame"].nunique()), "faces": int((fex["FaceScore"] > 0).sum())}))
