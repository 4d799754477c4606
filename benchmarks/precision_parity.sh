#!/usr/bin/env bash
# fp32 vs bf16 loss parity: the PCRL 2D, Models Genesis 3D and SimCLR reference recipes (zoo/recipes/*.toml),
# same seed, stopped after a few hundred steps, one run at a time.
# Re-running continues interrupted runs (--resume) and skips finished ones.
#   RUNS=/path/to/parity bash benchmarks/precision_parity.sh [RECIPE...]
# then: python benchmarks/precision_parity.py --runs $RUNS
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/parity}
ZOO=${ZOO:-.venv/bin/zoo}
declare -A STEPS=([pcrl_kermany]=${PCRL_STEPS:-150} [genesis_ct]=${GENESIS_STEPS:-150} [simclr_kermany]=${SIMCLR_STEPS:-200})
mkdir -p "$RUNS"
ORDER=(pcrl_kermany genesis_ct simclr_kermany)
for name in "${@:-${ORDER[@]}}"; do
  for precision in fp32 bf16; do
    out="$RUNS/${name}_$precision"
    if [ -f "$out/pretrained_cfg.json" ]; then echo "== $out: done"; continue; fi
    if [ -f "$out/ckpt/latest.json" ]; then
      echo "== $(date +%T) $name $precision: resume $out"
      $ZOO pretrain --out "$out" --resume >>"$out.out" 2>&1
    else
      echo "== $(date +%T) $name $precision -> $out"
      $ZOO pretrain --recipe "$name" --max-steps "${STEPS[$name]}" --precision "$precision" --ckpt-every 50 \
        --no-progress --out "$out" >>"$out.out" 2>&1
    fi
  done
done
echo "== $(date +%T) all done"
