#!/usr/bin/env bash
# fp32 vs bf16 loss parity: the PCRL 2D, SimCLR and Models Genesis 3D reference recipes
# (scripts/pretrain_reference.sh), same seed, stopped after a few hundred steps, one run at a time.
# Re-running continues interrupted runs (--resume) and skips finished ones.
#   RUNS=/path/to/parity bash benchmarks/precision_parity.sh [NAME...]
# then: python benchmarks/precision_parity.py --runs $RUNS
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/parity}
ZOO=${ZOO:-.venv/bin/zoo}
DATA=${ZOO_DATA_DIR:-../shared/data}
RUN="--seed 0 --ckpt-every 50 --no-progress"
KERMANY="--data $DATA/cxr/kermany/train --img-size 64 --batch-size 32 --epochs 15 --modality cxr $RUN"
CT="--data $DATA/ct/volumes --cube-size 32 32 32 --batch-size 4 --modality ct $RUN"
declare -A RECIPE=(
  [pcrl_kermany]="--method pcrl --arch pcrl_unet_resnet18 $KERMANY --epochs 6 --lr 0.03 --max-steps ${PCRL_STEPS:-150}"
  [genesis_ct]="--method genesis --arch genesis_unet3d_small_seg $CT --epochs 10 --samples-per-volume 32 --max-steps ${GENESIS_STEPS:-150}"
  [simclr_kermany]="--method simclr --arch simclr_resnet18 $KERMANY --hparam aug=cxr --hparam temperature=0.2 --max-steps ${SIMCLR_STEPS:-200}"
)
ORDER=(pcrl_kermany genesis_ct simclr_kermany)
mkdir -p "$RUNS"
for name in "${@:-${ORDER[@]}}"; do
  for precision in fp32 bf16; do
    out="$RUNS/${name}_$precision"
    if [ -f "$out/pretrained_cfg.json" ]; then echo "== $out: done"; continue; fi
    resume=""
    [ -f "$out/ckpt/latest.json" ] && resume="--resume"
    echo "== $(date +%T) $name $precision -> $out $resume"
    # shellcheck disable=SC2086
    $ZOO pretrain ${RECIPE[$name]} --precision "$precision" --out "$out" $resume >>"$out.out" 2>&1
  done
done
echo "== $(date +%T) all done"
