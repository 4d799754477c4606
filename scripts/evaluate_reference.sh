#!/usr/bin/env bash
# The evaluation of zoo's reference weights: every results file behind MODEL_CARD.md and the registry metrics.
#   bash scripts/evaluate_reference.sh NAME [--checkpoint-path FILE]     (NAME = network.tag, e.g. resnet18.pcrl_kermany64)
# Writes results/NAME__TASK__PROTOCOL__fF.json, the label-fraction plot results/NAME__label_fraction.png,
# the Grad-CAM figure results/NAME__gradcam.png, the registry metrics of NAME into zoo/meta/catalog/reference_metrics.json
# and the results block of NAME's MODEL_CARD.md section (also written to $TMPDIR/NAME.md).
# A checkpoint's task follows its pretraining data: cxr -> kermany_pneumonia (64 px, as pretrained),
# fundus -> retinamnist (28-px photos upsampled to 64 px, as pretrained) and drive_vessels, ct -> adrenalmnist3d.
# Seeds 0, 1, 2 everywhere. Re-running skips results (and figures) already made from the registered file with
# the same flags (an interrupted evaluation continues); FORCE=1 measures everything again;
# SKIP="TASK[/PROTOCOL] ..." leaves tasks, or one protocol of a task, out.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${ZOO:-.venv/bin/zoo}
name=${1:?usage: evaluate_reference.sh NAME [--checkpoint-path FILE]}
shift
read -r modality sha < <($ZOO info "$name" --json | .venv/bin/python -c '
import json, sys; cfg = json.load(sys.stdin); print(cfg["modality"], cfg["sha256"])')
ev() { # ev TASK PROTOCOL FRACTION [extra flags]; an --img-size other than $px is named in the file
  local task=$1 protocol=$2 fraction=$3 at="" prev="" flag
  shift 3
  for flag in "$@"; do
    [ "$prev" = --img-size ] && [ "$flag" != "${px:-}" ] && at="__${flag}px"
    prev=$flag
  done
  local out="results/${name}__${task}__${protocol}__f${fraction}${at}.json"
  case " ${SKIP:-} " in *" $task "* | *" $task/$protocol "*) echo "== $out: skipped (SKIP)"; return ;; esac
  if [ -z "${FORCE:-}" ] && [ -f "$out" ] && grep -q "\"sha256\": \"$sha\"" "$out"; then
    local flag measured=1
    for flag in "$@"; do  # every flag asked for (e.g. --robustness) is in the recorded command
      case $flag in --*) grep -q -- "\"command\": \"[^\"]* $flag" "$out" || measured= ;; esac
    done
    if [ -n "$measured" ]; then echo "== $out: done (FORCE=1 measures it again)"; return; fi
  fi
  # results/ is named here (--out): `zoo eval` alone writes to ./zoo-results, never into the repository
  $ZOO eval "$name" --task "$task" --protocol "$protocol" --label-fraction "$fraction" --seeds 3 "$@" \
    --out "$out"
}
cam() { # cam TASK [extra flags]: the Grad-CAM figure, unless already drawn from the registered file
  local out="results/${name}__gradcam.png" task=$1
  shift
  if [ -z "${FORCE:-}" ] && [ -f "$out" ] && .venv/bin/python -c '
import sys; from zoo.report import gradcam_info
sys.exit(gradcam_info(sys.argv[1])[1] != sys.argv[2])' "$out" "$sha"; then
    echo "== $out: done (FORCE=1 draws it again)"; return
  fi
  $ZOO gradcam "$name" --task "$task" -o "$out" "$@"
}
case $modality in
  cxr)
    px=64
    for f in 0.01 0.1; do ev kermany_pneumonia linear $f --img-size $px "$@"; done
    ev kermany_pneumonia linear 1 --img-size $px --robustness "$@"
    for f in 0.01 0.1 1; do ev kermany_pneumonia finetune $f --img-size $px "$@"; done
    # fine-tuning at twice the pretraining size (~45 min for 3 seeds x 2 arms): the strongest checkpoint only
    if [ "$name" = resnet18.micle_kermany64 ]; then ev kermany_pneumonia finetune 1 --img-size 128 "$@"; fi
    cam kermany_pneumonia --img-size 128 --max-train 1000 "$@"
    ;;
  fundus)
    px=64
    for f in 0.01 0.1; do ev retinamnist linear $f --img-size $px "$@"; done
    ev retinamnist linear 1 --img-size $px --robustness "$@"
    ev retinamnist finetune 1 --img-size $px "$@"
    ev drive_vessels finetune 1 "$@"
    cam retinamnist --img-size 128 "$@"
    ;;
  ct)
    for f in 0.01 0.1; do ev adrenalmnist3d linear $f "$@"; done
    ev adrenalmnist3d linear 1 --robustness "$@"
    ev adrenalmnist3d finetune 1 "$@"
    cam adrenalmnist3d --img-size 64 --max-train 600 "$@"
    ;;
  *) echo "no evaluation recipe for modality '$modality' of $name" >&2; exit 2 ;;
esac
# the registry metrics of NAME (zoo/meta/catalog/ reads them from zoo/meta/catalog/reference_metrics.json)
$ZOO report results/"${name}"__*.json --metrics | .venv/bin/python -c '
import json, sys
path, name = "zoo/meta/catalog/reference_metrics.json", sys.argv[1]
table = json.load(open(path))
table[name] = json.load(sys.stdin)
open(path, "w").write(json.dumps(table, indent=1, sort_keys=True) + "\n")' "$name"
echo "registry metrics: zoo/meta/catalog/reference_metrics.json[$name]"
# the results block of NAME's MODEL_CARD.md section (between its `<!-- zoo report NAME: begin/end -->` lines)
$ZOO report results/"${name}"__*.json --plot "results/${name}__label_fraction.png" \
  --gradcam "results/${name}__gradcam.png" --markdown "${TMPDIR:-/tmp}/${name}.md" --card MODEL_CARD.md
# the card's first table (which checkpoint for what) and the published anchors (once per task), over every
# measured checkpoint (the names in reference_metrics.json), from the registry metrics just written
.venv/bin/python -c '
import json
from pathlib import Path
from zoo.report import (ANCHORS_BLOCK, OVERVIEW_BLOCK, checkpoint_overview_markdown, published_anchors_markdown,
                        update_card)
names = sorted(json.loads(Path("zoo/meta/catalog/reference_metrics.json").read_text()))
update_card("MODEL_CARD.md", OVERVIEW_BLOCK, checkpoint_overview_markdown(names))
update_card("MODEL_CARD.md", ANCHORS_BLOCK, published_anchors_markdown(
    sorted(p for n in names for p in Path("results").glob(f"{n}__*.json"))))'
echo "MODEL_CARD.md: overview table and published anchors updated"
