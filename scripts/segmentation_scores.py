"""Score the README's real segmentation runs (``scripts/segmentation_runs.sh``) from their files.

For each run: its ``finetune.json`` (starting weights, best epoch, validation Dice as measured during
fine-tuning, per-epoch times, CPU) and the Dice of what ``zoo predict`` wrote for the validation scans, against
the reference, on the scans' own grids:

* HRF vessels: each validation photograph's ``<stem>_mask.png`` at full size (2336 x 1752) against its
  ``manual1`` mask (foreground = mask > 0), Dice per photograph and their mean;
* TotalSegmentator crop: ``crop_superior_pred.nii.gz`` (3 mm, the input's grid) against the split's label map,
  Dice per label (liver, spleen, kidneys) and their mean.

Writes ``OUT/segmentation.json`` (everything), ``OUT/segmentation.md`` (the tables) and
``OUT/hrf_vessels_<photo>.png`` (a validation photograph, both predictions, the manual mask).

    python scripts/segmentation_scores.py --runs /work/runs --hrf /tmp/hrf_seg --out results/finetune
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.eval.metrics import f1_in_mask as dice  # noqa: E402  (F1 of binary masks = Dice)

HRF_RUNS = {"hrf_vessels_micle": "resnet18.micle_fundus64", "hrf_vessels_random": "random init"}
CT_RUNS = {"totalseg_pcrl": "unet3d_small_seg.pcrl_ct32", "totalseg_random": "random init"}
CT_LABELS = ("liver", "spleen", "kidneys")


def run_record(rec: dict[str, Any], start: str) -> dict[str, Any]:
    """What one fine-tuning run recorded (its ``finetune.json``): weights, best epoch, validation metrics, time
    per epoch."""
    times = rec["epoch_times_s"]
    return {
        "start": start, "sha256": rec["start"]["sha256"], "command": rec["command"], "seed": rec["seed"],
        "epochs": len(rec["history"]), "best_epoch": rec["best_epoch"], "stopped_early": rec["stopped_early"],
        "n_train": rec["data"]["n_train"], "n_val": rec["data"]["n_val"],
        "val_metrics": {k: v for k, v in rec["val_metrics"].items() if k != "dice_per_image"},
        "val_dice_per_epoch": [round(h["val_dice"], 4) for h in rec["history"]],
        "train_s_per_epoch": round(float(np.mean([t["train_s"] for t in times])), 1),
        "val_s_per_epoch": round(float(np.mean([t["val_s"] for t in times])), 1),
        "fine_tuning_s": round(float(sum(t["train_s"] + t["val_s"] for t in times))),
        "cpu": rec["cpu"], "num_threads": rec["num_threads"], "torch": rec["torch_version"],
    }


def score_hrf(runs: Path, hrf: Path) -> dict[str, Any]:
    out = {}
    for name, start in HRF_RUNS.items():
        recorded = json.loads((runs / "finetune" / name / "finetune.json").read_text())
        rec = run_record(recorded, start)
        per = {}
        for f in recorded["data"]["val_files"]:
            stem = Path(f).stem
            pred = np.asarray(Image.open(runs / "predict" / name / f"{stem}_mask.png")) > 0
            ref = np.asarray(Image.open(hrf / "masks" / f"{stem}.png").convert("L")) > 0
            if pred.shape != ref.shape:
                raise SystemExit(f"{stem}: prediction {pred.shape} vs mask {ref.shape}: not on the photograph's grid")
            per[stem] = round(dice(ref, pred), 4)
        rec["predict_dice_per_photo"] = per
        rec["predict_dice_mean"] = round(float(np.mean(list(per.values()))), 4)
        out[name] = rec
    return out


def score_ct(runs: Path) -> dict[str, Any]:
    ref_img = nib.load(runs / "totalseg_halves" / "val" / "labels" / "crop_superior.nii.gz")
    ref = np.asarray(ref_img.dataobj)
    out = {}
    for name, start in CT_RUNS.items():
        rec = run_record(json.loads((runs / "finetune" / name / "finetune.json").read_text()), start)
        img = nib.load(runs / "predict" / name / "crop_superior_pred.nii.gz")
        if img.shape != ref.shape or not np.allclose(img.affine, ref_img.affine, atol=1e-4):
            raise SystemExit(f"{name}: prediction {img.shape} is not on the input's grid {ref.shape}")
        pred = np.asarray(img.dataobj)
        per = {label: dice(ref == k, pred == k) for k, label in enumerate(CT_LABELS, start=1)}
        rec["predict_dice_per_label"] = {k: round(v, 4) for k, v in per.items()}
        rec["predict_dice_mean"] = round(float(np.mean(list(per.values()))), 4)
        rec["voxels"] = {"input_grid": list(ref.shape), "per_label": {lab: int((ref == k).sum())
                                                                      for k, lab in enumerate(CT_LABELS, start=1)}}
        out[name] = rec
    return out


def figure(runs: Path, hrf: Path, scores: dict[str, Any], out: Path) -> Path:
    """A validation photograph, both predictions and the manual mask, side by side (at a quarter size)."""
    stem = sorted(scores["hrf_vessels_micle"]["predict_dice_per_photo"])[0]
    size = (438, 292)
    panels = [(Image.open(hrf / "images" / f"{stem}.jpg").convert("L"), f"{stem}.jpg (validation)")]
    for name, rec in scores.items():
        label = f"{rec['start']}: Dice {rec['predict_dice_per_photo'][stem]:.3f}"
        panels.append((Image.open(runs / "predict" / name / f"{stem}_mask.png").convert("L"), label))
    panels.append((Image.open(hrf / "masks" / f"{stem}.png").convert("L"), "manual1 (reference)"))
    canvas = Image.fromarray(np.concatenate([np.asarray(p.resize(size, Image.BILINEAR)) for p, _ in panels], 1))
    draw = ImageDraw.Draw(canvas)
    for k, (_, text) in enumerate(panels):
        draw.text((k * size[0] + 6, 4), text, fill=255)
    path = out / f"hrf_vessels_{stem}.png"
    canvas.save(path, optimize=True)
    return path


def markdown(hrf: dict[str, Any], ct: dict[str, Any]) -> str:
    lines = ["| data | start | best epoch | val Dice (fine-tuning) | Dice of `zoo predict` on the validation scans "
             "| training + validation s / epoch |", "|---|---|---|---|---|---|"]
    for data, runs in (("HRF vessels (2D)", hrf), ("TotalSegmentator crop (3D)", ct)):
        for rec in runs.values():
            detail = rec.get("predict_dice_per_label")
            what = (f"{rec['predict_dice_mean']:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in detail.items()) + ")"
                    if detail else f"{rec['predict_dice_mean']:.3f} (mean of {len(rec['predict_dice_per_photo'])} photos)")
            lines.append(f"| {data} | {rec['start']} | {rec['best_epoch']} of {rec['epochs']} | "
                         f"{rec['val_metrics']['dice']:.3f} | {what} | {rec['train_s_per_epoch']} + "
                         f"{rec['val_s_per_epoch']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/work/runs"))
    parser.add_argument("--hrf", type=Path, default=Path("/tmp/hrf_seg"))
    parser.add_argument("--out", type=Path, default=Path("results/finetune"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    hrf = score_hrf(args.runs, args.hrf)
    ct = score_ct(args.runs) if (args.runs / "predict" / "totalseg_random").is_dir() else {}
    fig = figure(args.runs, args.hrf, hrf, args.out)
    (args.out / "segmentation.json").write_text(json.dumps({"hrf_vessels": hrf, "totalseg_crop": ct,
                                                            "figure": str(fig)}, indent=1) + "\n")
    table = markdown(hrf, ct)
    (args.out / "segmentation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
