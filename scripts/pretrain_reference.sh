#!/usr/bin/env bash
# The recipes of zoo's reference weights, run one after the other (2 CPU cores: one job at a time).
# Re-running the script continues an interrupted run with --resume and skips finished ones.
#   RUNS=/path/to/runs bash scripts/pretrain_reference.sh [NAME...]     (default: all, in order)
# Logs: $RUNS/NAME/log.jsonl (every step) and $RUNS/NAME.out (console).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
ZOO=${ZOO:-.venv/bin/zoo}
DATA=${ZOO_DATA_DIR:-../shared/data}
RUN="--seed 0 --ckpt-every 50 --no-progress"  # what every recipe shares
KERMANY="--data $DATA/cxr/kermany/train --img-size 64 --batch-size 32 --epochs 15 --modality cxr $RUN
         --license-data CC-BY-4.0 --license-weights CC-BY-4.0"
CT="--data $DATA/ct/volumes --cube-size 32 32 32 --batch-size 4 --modality ct $RUN
    --license-data CC-BY-4.0,Apache-2.0,GPL-2.0 --license-weights GPL-2.0"
FUNDUS="--img-size 64 --batch-size 32 --modality fundus $RUN
        --license-data EyePACS:Kaggle-rules-research-only,DRIVE:research-only,HRF:CC-BY-4.0
        --license-weights research-use-only"

declare -A RECIPE=(
  [simclr_kermany]="--method simclr --arch simclr_resnet18 $KERMANY --hparam aug=cxr --hparam temperature=0.2"
  [mocov2_kermany]="--method mocov2 --arch mocov2_resnet18 $KERMANY --hparam aug=cxr --hparam queue_size=4096"
  [micle_kermany]="--method micle --arch micle_resnet18 $KERMANY --hparam aug=cxr --hparam temperature=0.2"
  # PCRL costs ~8x a ResNet-18 step (two U-Net decodes per view pair, four reconstructions): 6 epochs match
  # the MoCo v2 baseline's wall time (about one CPU-hour), at MoCo v2's SGD lr (upstream's 1e-3 is for 240 epochs)
  [pcrl_kermany]="--method pcrl --arch pcrl_unet_resnet18 $KERMANY --epochs 6 --lr 0.03"
  # its restoration-only ablation at the same budget (the paper's claim: PCRL beats restoration and contrast alone)
  [pcrl_recon_kermany]="--method pcrl --arch pcrl_unet_resnet18 $KERMANY --epochs 6 --lr 0.03 --hparam contrast_weight=0"
  # PCRLv2 (2 global + 6 local views, multi-scale decoder heads): 8 epochs (1,304 steps of 32 images), more steps
  # than PCRL's 978 because a PCRLv2 step is cheaper (SimSiam-style: no momentum encoder); the same SGD lr
  [pcrlv2_kermany]="--method pcrlv2 --arch pcrlv2_resnet18 $KERMANY --epochs 8 --lr 0.03"
  # 2.5 s per step of 4 cubes on 2 cores (width 16): 10 epochs of 7 x 32 cubes = 560 steps, ~23 min
  [genesis_ct]="--method genesis --arch genesis_unet3d_small_seg $CT --epochs 10 --samples-per-volume 32"
  # SWCL on the fundus photos (EyePACS + HRF labelled, DRIVE training photos unlabelled; DRIVE test never read):
  # the pseudo-labeller (~16 min) runs first and is cached; 64-px patches of S = 128 px photos
  [swcl_fundus]="--method swcl --arch swcl_resnet18 --data $DATA/fundus $FUNDUS --epochs 30"
  # MICLe on the 130 EyePACS photos (110 have a same-patient partner: the other eye)
  [micle_fundus]="--method micle --arch micle_resnet18 --data $DATA/fundus/eyepacs $FUNDUS --epochs 200 --hparam temperature=0.2 --hparam aug=mocov2"
  # PCRL 3D at Models Genesis' budget (560 steps, 2.5 s each on 2 cores, ~23 min), at the 2D recipe's SGD lr
  [pcrl_ct]="--method pcrl --arch pcrl_unet3d_small_seg $CT --epochs 10 --samples-per-volume 32 --lr 0.03"
  # its restoration-only and contrast-only ablations at the same budget
  [pcrl_recon_ct]="--method pcrl --arch pcrl_unet3d_small_seg $CT --epochs 10 --samples-per-volume 32 --lr 0.03 --hparam contrast_weight=0"
  [pcrl_contrast_ct]="--method pcrl --arch pcrl_unet3d_small_seg $CT --epochs 10 --samples-per-volume 32 --lr 0.03 --hparam recon_weight=0"
)
ORDER=(simclr_kermany mocov2_kermany micle_kermany pcrl_kermany pcrl_recon_kermany pcrlv2_kermany genesis_ct swcl_fundus
       micle_fundus pcrl_ct pcrl_recon_ct pcrl_contrast_ct)

for name in "${@:-${ORDER[@]}}"; do
  out="$RUNS/$name"
  if [ -f "$out/pretrained_cfg.json" ] && grep -q '"finished": true' "$out/run.json"; then
    echo "== $name: done ($out)"; continue
  fi
  resume=""
  [ -f "$out/ckpt/latest.json" ] && resume="--resume"
  echo "== $name: $ZOO pretrain ${RECIPE[$name]} --out $out $resume"
  # shellcheck disable=SC2086
  $ZOO pretrain ${RECIPE[$name]} --out "$out" $resume >>"$RUNS/$name.out" 2>&1
done
