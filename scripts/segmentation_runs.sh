#!/usr/bin/env bash
# The README's real segmentation runs on data zoo never trained on with labels, each from the pretrained
# checkpoint and from random init (the same recipe, seed 0), then predicted on the validation scans as a user would:
#   2D: HRF's retinal vessels (the 42 photographs that have a manual vessel mask), resnet18.micle_fundus64
#   3D: TotalSegmentator's example CT crop split into two volumes (liver, spleen, kidneys), unet3d_small_seg.pcrl_ct32
#     bash scripts/segmentation_runs.sh          (RUNS=/work/runs by default; the data: $ZOO_DATA_DIR or ../shared/data)
# Resumable: a finished fine-tuning run is kept, an interrupted one continues (--resume). At the end
# scripts/segmentation_scores.py scores the predictions against the manual masks / labels and writes
# results/finetune/segmentation.json, its markdown table and the HRF figure.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${ZOO:-.venv/bin/zoo}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-/work/runs}
HRF=${HRF:-/tmp/hrf_seg}
DATA=$(realpath "${ZOO_DATA_DIR:-../shared/data}")

# --- data: links to the HRF photographs with a vessel mask; the CT crop split in two --------------------------
mkdir -p "$HRF/images" "$HRF/masks"
for m in "$DATA"/fundus/hrf/manual1/*.png; do
  s=$(basename "$m" .png)
  ln -sf "$m" "$HRF/masks/"
  ln -sf "$DATA/fundus/hrf/images/$s.jpg" "$HRF/images/"
done
[ -f "$RUNS/totalseg_halves/val/labels/crop_superior.nii.gz" ] || $PY scripts/totalseg_halves.py "$RUNS/totalseg_halves"
TS=$RUNS/totalseg_halves

# --- fine-tuning --------------------------------------------------------------------------------------------------
finetune() { # RUN_NAME then zoo finetune's arguments
  local name=$1 resume=""
  shift
  [ -f "$RUNS/finetune/$name/model.safetensors" ] && { echo "== $name: done"; return; }
  [ -f "$RUNS/finetune/$name/state.pt" ] && resume=--resume
  echo "== $name: $ZOO finetune $* $resume"
  $ZOO finetune "$@" --out "$RUNS/finetune/$name" --no-progress $resume
}
finetune hrf_vessels_micle resnet18.micle_fundus64 --data "$HRF" --scale 0.5
finetune hrf_vessels_random resnet18.micle_fundus64 --random-init --data "$HRF" --scale 0.5
finetune totalseg_pcrl unet3d_small_seg.pcrl_ct32 --data "$TS/train" --val "$TS/val" \
  --label-names liver,spleen,kidneys --epochs 20
finetune totalseg_random unet3d_small_seg.pcrl_ct32 --random-init --data "$TS/train" --val "$TS/val" \
  --label-names liver,spleen,kidneys --epochs 20

# --- prediction on the validation scans (whole photographs at full size; the whole validation volume) -----------
for run in hrf_vessels_micle hrf_vessels_random; do
  out=$RUNS/predict/$run
  mapfile -t val < <($PY -c "import json, sys; print(*json.load(open(sys.argv[1]))['data']['val_files'], sep='\n')" \
    "$RUNS/finetune/$run/finetune.json")
  last=$(basename "${val[-1]}")
  [ -f "$out/${last%.*}_mask.png" ] && continue
  /usr/bin/time -f "$run: %e s wall, %U + %S s CPU, %M KB peak" $ZOO predict "local-dir:$RUNS/finetune/$run" "${val[@]}" -o "$out"
done
for run in totalseg_pcrl totalseg_random; do
  out=$RUNS/predict/$run
  [ -f "$out/predictions.json" ] && continue
  /usr/bin/time -f "$run: %e s wall, %U + %S s CPU, %M KB peak" $ZOO predict "local-dir:$RUNS/finetune/$run" \
    "$TS/val/images/crop_superior.nii.gz" -o "$out"
done
$PY scripts/segmentation_scores.py --runs "$RUNS" --hrf "$HRF" --out results/finetune
