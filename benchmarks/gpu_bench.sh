#!/usr/bin/env bash
# facecli bench on a GPU at several batch sizes, every run on one generated 720p clip.
#
#     benchmarks/gpu_bench.sh [FRAMES] [BATCH ...]      (defaults: 256 frames, batches 1 16 64)
#
# Per batch size: feat-v2 (random weights in the published layouts) at py-feat's work
# (--detect-size full --detect-every 1 --precision fp32) and at facecli's defaults, then lite at
# its defaults. Reports go to $OUT (or ./gpu-bench): one JSON per run and summary.txt with a
# line per run. With $FACECLI_PYFEAT_PYTHON set (an interpreter with py-feat 2.1.5 and a CUDA
# torch, see benchmarks/compare_pyfeat.py), also py-feat against facecli side by side at each
# batch size (compare_pyfeat.py; its printout in pyfeat-bBATCH.txt, a JSON beside it), on
# $PYFEAT_FRAMES frames (default 64) in $PYFEAT_ROUNDS interleaved rounds (default 3).
# DEVICE=cpu runs the same on the CPU (a dry run of the script). $PYTHON (default python3) must
# import facecli's dependencies, PyAV included.
set -euo pipefail
frames=${1:-256}
shift || true
batches=${*:-1 16 64}
out=${OUT:-gpu-bench}
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
"$python" - "$device" <<'PY'
import sys, torch
device = sys.argv[1]
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("gpu_bench.sh: torch sees no CUDA device (DEVICE=cpu runs a dry run on the CPU)")
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__)
PY
"$python" -c "from facecli.bench.clip import make_clip; make_clip('$out/clip.mp4', $frames)"
summary="$out/summary.txt"
: > "$summary"
run() {  # name, then facecli bench options
    local name=$1
    shift
    "$python" -m facecli bench "$out/clip.mp4" --frames "$frames" --device "$device" --json "$out/$name.json" "$@" \
        > "$out/$name.txt" 2>&1 || { echo "$name: failed (see $name.txt)" >> "$summary"; return 0; }
    echo "$name: $(grep '^total' "$out/$name.txt")" >> "$summary"
}
for b in $batches; do
    run "featv2-equal-b$b" --models feat-v2 --random-weights --batch-size "$b" \
        --detect-size full --detect-every 1 --precision fp32
    run "featv2-defaults-b$b" --models feat-v2 --random-weights --batch-size "$b"
    run "lite-defaults-b$b" --models lite --batch-size "$b"
    if [ -n "${FACECLI_PYFEAT_PYTHON:-}" ]; then
        name="pyfeat-b$b"
        if PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" "$repo/benchmarks/compare_pyfeat.py" "$out/clip.mp4" \
            --device "$device" --batch-size "$b" --frames "${PYFEAT_FRAMES:-64}" --rounds "${PYFEAT_ROUNDS:-3}" \
            --json "$out/$name.json" > "$out/$name.txt" 2>&1; then
            grep -E '^(py-feat|facecli) |median fps' "$out/$name.txt" | sed "s/^/$name: /" >> "$summary"
        else
            echo "$name: failed (see $name.txt)" >> "$summary"
        fi
    fi
done
cat "$summary"
