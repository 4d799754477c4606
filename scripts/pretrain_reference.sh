#!/usr/bin/env bash
# The recipes of zoo's reference weights, run one after the other (2 CPU cores: one job at a time).
# Each recipe is a file zoo/recipes/NAME.toml (the only copy of its flags), run as `zoo pretrain --recipe NAME`.
# Re-running the script continues an interrupted run with --resume and skips finished ones.
#   RUNS=/path/to/runs bash scripts/pretrain_reference.sh [NAME...]     (default: all, in order)
# Data: $ZOO_DATA_DIR (default ../shared/data). Logs: $RUNS/NAME/log.jsonl (every step) and $RUNS/NAME.out (console).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
ZOO=${ZOO:-.venv/bin/zoo}
PY=${PY:-$(dirname "$ZOO")/python}
export ZOO_DATA_DIR=${ZOO_DATA_DIR:-../shared/data}
mapfile -t ORDER < <("$PY" -m zoo.meta.recipes list)

for name in "${@:-${ORDER[@]}}"; do
  out="$RUNS/$name"
  if [ -f "$out/pretrained_cfg.json" ] && grep -q '"finished": true' "$out/run.json"; then
    echo "== $name: done ($out)"; continue
  fi
  if [ -f "$out/ckpt/latest.json" ]; then
    echo "== $name: $ZOO pretrain --out $out --resume"
    $ZOO pretrain --out "$out" --resume --no-progress >>"$RUNS/$name.out" 2>&1
  else
    echo "== $name: $ZOO pretrain --recipe $name --out $out  # = $("$PY" -m zoo.meta.recipes command "$name")"
    $ZOO pretrain --recipe "$name" --out "$out" >>"$RUNS/$name.out" 2>&1
  fi
done
