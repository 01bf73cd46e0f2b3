"""Reference side of the whole-run parity test: py-feat 2.1.5 Detectorv2.detect on image files.

Usage: ref_detectorv2.py WEIGHTS_DIR OUT.csv IMAGE...
WEIGHTS_DIR is laid out as WEIGHTS_DIR/<repo_id>/<filename>; hub downloads are redirected there.
"""

import sys
from pathlib import Path

import torch
from pyfeat_local import detectorv2

weights, out, images = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
torch.set_num_threads(2)
fex = detectorv2(weights).detect(images, data_type="image", batch_size=1, progress_bar=False)
fex.to_csv(out, index=False)
print(len(fex))
