#!/usr/bin/env bash
# The ablation arms of a reference checkpoint, measured with the reference protocol but not shipped.
#   RUNS=/path/to/runs bash scripts/evaluate_ablations.sh RECIPE ARCH LABEL
# e.g. `bash scripts/evaluate_ablations.sh pcrl_contrast_ct unet3d_small unet3d_small.pcrl_ct32_contrast_only`
# evaluates $RUNS/pcrl_contrast_ct (a finished scripts/pretrain_reference.sh run) as ARCH with --checkpoint-path and
# writes results/ablations/LABEL__TASK__PROTOCOL__fF.json and the markdown table ${TMPDIR:-/tmp}/LABEL.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${ZOO:-.venv/bin/zoo}
RUNS=${RUNS:-runs}
recipe=${1:?usage: evaluate_ablations.sh RECIPE ARCH LABEL}
arch=${2:?usage: evaluate_ablations.sh RECIPE ARCH LABEL}
label=${3:?usage: evaluate_ablations.sh RECIPE ARCH LABEL}
ckpt=$(ls "$RUNS/$recipe"/*.safetensors)
grep -q '"finished": true' "$RUNS/$recipe/run.json" || { echo "$RUNS/$recipe is not finished" >&2; exit 2; }
mkdir -p results/ablations
modality=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["modality"])' \
  "$RUNS/$recipe/pretrained_cfg.json")
case $modality in
  ct) runs=("adrenalmnist3d linear 0.01" "adrenalmnist3d linear 0.1" "adrenalmnist3d linear 1") ;;
  cxr) runs=("kermany_pneumonia linear 0.01 --img-size 64" "kermany_pneumonia linear 0.1 --img-size 64"
             "kermany_pneumonia linear 1 --img-size 64") ;;
  *) echo "no ablation protocol for modality '$modality'" >&2; exit 2 ;;
esac
for r in "${runs[@]}"; do
  # shellcheck disable=SC2086
  set -- $r
  task=$1 protocol=$2 fraction=$3
  shift 3
  $ZOO eval "$arch" --checkpoint-path "$ckpt" --task "$task" --protocol "$protocol" --label-fraction "$fraction" \
    --seeds 3 "$@" --out "results/ablations/${label}__${task}__${protocol}__f${fraction}.json"
done
$ZOO report results/ablations/"${label}"__*.json --markdown "${TMPDIR:-/tmp}/${label}.md"
