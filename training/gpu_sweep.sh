#!/usr/bin/env bash
# Recipe sweep for the tiny default model on a GPU machine (16 cores, one GPU): several
# train_tiny.py runs side by side on the one GPU, each with its own scene-drawing workers, then
# each checkpoint evaluated at the training size on the CPU. Used to choose the recipe that the
# CPU command in docs/default_model.md runs; prints one line per variant.
#   bash training/gpu_sweep.sh OUT_DIR MINUTES "name:args" ["name:args" ...]
set -euo pipefail
out=$1; minutes=$2; shift 2
mkdir -p "$out"
export PYTHONUNBUFFERED=1
pids=()
for spec in "$@"; do
  name=${spec%%:*}; args=${spec#*:}
  # shellcheck disable=SC2086
  python3 training/train_tiny.py --device cuda --minutes "$minutes" --threads 1 \
    --output "$out/$name.pth" $args >"$out/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a run failed (pid $pid)"; done
for spec in "$@"; do
  name=${spec%%:*}
  tail -n 2 "$out/$name.log"
  python3 training/evaluate.py --checkpoint "$out/$name.pth" --presets basam \
    --images 256:100 --threads 4 --output "$out/$name.eval.json" >"$out/$name.eval.log" 2>&1 &
done
wait
for spec in "$@"; do
  name=${spec%%:*}
  echo "== $name ($spec)"; grep -E "^ +256" "$out/$name.eval.log" || tail -n 5 "$out/$name.eval.log"
done
