#!/usr/bin/env bash
# The fused attention kernel on a CUDA GPU: checks, then kernel vs SDPA (benchmarks/gpu_attention.py).
#   benchmarks/gpu_attention.sh [OUT_DIR] [gpu_attention.py options, e.g. --max-side 128]
# Writes OUT_DIR/gpu_attention.json and OUT_DIR/gpu_attention.log (default OUT_DIR: benchmarks/out).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/benchmarks/out"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    out="$1"
    shift
fi
mkdir -p "$out"
# Unbuffered, so that the log shows each result as it comes; the repo on the path, installed or not.
PYTHONUNBUFFERED=1 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
    python "$repo/benchmarks/gpu_attention.py" --out "$out" "$@" 2>&1 | tee "$out/gpu_attention.log"
