#!/usr/bin/env bash
# Recipe sweep for the tiny default model: several train_tiny.py runs of the same length side by
# side (one CPU core each, or sharing one GPU with DEVICE=cuda), then each checkpoint evaluated at
# the training size. How the recipe in docs/default_model.md was chosen; one line per variant.
#   bash training/sweep.sh OUT_DIR STEPS "name:args" ["name:args" ...]
# e.g. bash training/sweep.sh /tmp/sweep 1500 "base:" "spread50:--spread-weight 0.5"
# Runs side by side are slower than one alone (two on one thread each: ~0.44 s a step instead of
# 0.26), so train_tiny.py's 60-minute safety stop is raised to MINUTES (default 180).
set -euo pipefail
out=$1; steps=$2; shift 2
device=${DEVICE:-cpu}
if [ "$device" = cpu ]; then workers=0; else workers=4; fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1
pids=()
for spec in "$@"; do
  name=${spec%%:*}; args=${spec#*:}
  # shellcheck disable=SC2086
  python3 training/train_tiny.py --device "$device" --steps "$steps" --threads 1 \
    --minutes "${MINUTES:-180}" \
    --workers "$workers" --log-every 100 --output "$out/$name.pth" $args >"$out/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a run failed (pid $pid)"; done
for spec in "$@"; do
  name=${spec%%:*}
  python3 training/evaluate.py --checkpoint "$out/$name.pth" --presets basam \
    --images 256:100 --threads 1 --output "$out/$name.eval.json" >"$out/$name.eval.log" 2>&1
  echo "== $name ($spec): $(tail -n 2 "$out/$name.log" | head -n 1)"
  grep -E "^ +256" "$out/$name.eval.log" || tail -n 5 "$out/$name.eval.log"
done
