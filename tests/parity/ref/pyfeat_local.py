"""Inside py-feat's environment: a Detectorv2 whose weights come from a local folder, never the Hub.

The folder is laid out as facecli's weights dir: DIR/<repo_id>/<filename>. py-feat's download
helpers are redirected to it before Detectorv2 is imported.
"""

import os
from pathlib import Path


def detectorv2(weights: Path, device: str = "cpu", identity_model: str = "arcface"):
    """Detectorv2 (fp32) with every weight file read from ``weights``."""
    import feat.utils
    import huggingface_hub

    files = {
        ("py-feat/retinaface_r34", "model.safetensors"): weights / "py-feat/retinaface_r34/model.safetensors",
        ("py-feat/arcface_r50", "arcface_r50.safetensors"): weights / "py-feat/arcface_r50/arcface_r50.safetensors",
        ("py-feat/facenet", "facenet_20180402_114759_vggface2.pth"):
            weights / "py-feat/facenet/facenet_20180402_114759_vggface2.pth",
    }

    def local_file(repo_id, filename, *args, **kwargs):
        return str(files[(repo_id, filename)])

    feat.utils.hf_hub_download_with_fallback = local_file
    huggingface_hub.hf_hub_download = local_file
    os.environ["FEAT_ARCFACE_R50_PATH"] = str(files[("py-feat/arcface_r50", "arcface_r50.safetensors")])

    from feat.detector_v2 import Detectorv2

    return Detectorv2(
        device=device,
        identity_model=identity_model,
        multitask_weights=str(weights / "py-feat/face_multitask_v2/face_multitask_v28.safetensors"),
        amp=False,
    )
