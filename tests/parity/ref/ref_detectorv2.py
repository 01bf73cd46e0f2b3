"""Reference side of the whole-run parity test: py-feat 2.1.5 Detectorv2.detect on image files.

Usage: ref_detectorv2.py WEIGHTS_DIR OUT.csv IMAGE...
WEIGHTS_DIR is laid out as WEIGHTS_DIR/<repo_id>/<filename>; hub downloads are redirected there.
"""

import os
import sys
from pathlib import Path

import torch

weights, out, images = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
files = {
    ("py-feat/retinaface_r34", "model.safetensors"): weights / "py-feat/retinaface_r34/model.safetensors",
    ("py-feat/arcface_r50", "arcface_r50.safetensors"): weights / "py-feat/arcface_r50/arcface_r50.safetensors",
}


def fake_download(repo_id, filename, *args, **kwargs):
    return str(files[(repo_id, filename)])


import feat.utils  # noqa: E402
import huggingface_hub  # noqa: E402

feat.utils.hf_hub_download_with_fallback = fake_download
huggingface_hub.hf_hub_download = fake_download
os.environ["FEAT_ARCFACE_R50_PATH"] = str(files[("py-feat/arcface_r50", "arcface_r50.safetensors")])

from feat.detector_v2 import Detectorv2  # noqa: E402

torch.set_num_threads(2)
detector = Detectorv2(
    device="cpu",
    identity_model="arcface",
    multitask_weights=str(weights / "py-feat/face_multitask_v2/face_multitask_v28.safetensors"),
    amp=False,
)
fex = detector.detect(images, data_type="image", batch_size=1, progress_bar=False)
fex.to_csv(out, index=False)
print(len(fex))
