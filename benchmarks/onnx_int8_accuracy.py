"""Downstream accuracy of a trained checkpoint in PyTorch eager vs onnxruntime fp32 vs onnxruntime int8.

The deployment question behind the "<= 0.5 AUC point drop" goal: a linear probe is fitted on the eager
backbone's features of the task's training images (``zoo eval``'s probe, features and preprocessing), then
scores the test images from each runtime's features. The fp32 ONNX file comes from ``zoo.export_onnx`` with
the registered weights (verified against PyTorch); ``zoo.export.quantize_onnx`` makes two static int8 files
from it (uint8 and int8 activations), calibrated on training images of the task.

    python benchmarks/onnx_int8_accuracy.py resnet18.simclr_kermany64
    python benchmarks/onnx_int8_accuracy.py resnet18.micle_kermany64 --label-fraction 0.1 --seed 1
    python benchmarks/onnx_int8_accuracy.py resnet18.simclr_kermany64 --methods minmax percentile entropy

Prints one table row per runtime (AUC, ACC, drop vs eager in AUC points) and a JSON line with the machine
(onnxruntime version, CPU, its int8 instruction sets: int8 kernels differ between CPUs).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zoo._machine import cpu_info
from zoo.eval.harness import EvalConfig, Preprocess, build_classifier, prepare_context
from zoo.eval.metrics import classification_metrics
from zoo.eval.probe import LogisticRegression
from zoo.export import CALIBRATION_METHODS, INPUT_NAME, export_onnx, ort_session, quantize_onnx

_logger = logging.getLogger("onnx_int8_accuracy")


def ort_features(path: Path, images: np.ndarray, prep: Preprocess, batch_size: int, threads: int) -> np.ndarray:
    """Pooled features of ``images`` from the ONNX file at ``path`` (the eval's preprocessing)."""
    session = ort_session(path, threads)
    outs = []
    for i in range(0, len(images), batch_size):
        x = np.ascontiguousarray(prep(images[i:i + batch_size]).numpy())
        outs.append(np.asarray(session.run(None, {INPUT_NAME: x})[0], dtype=np.float32))
    return np.concatenate(outs)


def machine() -> dict[str, object]:
    """What int8 accuracy depends on: onnxruntime's version and the CPU (its int8 instruction sets)."""
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, **cpu_info()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", default="resnet18.simclr_kermany64", help="a registered arch.tag")
    ap.add_argument("--task", default="kermany_pneumonia")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--label-fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the labelled subset")
    ap.add_argument("--calibration", type=int, default=64, help="training images to calibrate int8 on")
    ap.add_argument("--methods", nargs="+", default=["minmax"], choices=list(CALIBRATION_METHODS),
                    help="activation-range calibration methods to compare")
    ap.add_argument("--activations", nargs="+", default=["uint8", "int8"], choices=["uint8", "int8"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    config = EvalConfig(args.name, args.task, "linear", args.label_fraction, seeds=1, img_size=args.img_size)
    ctx = prepare_context(config)
    if ctx.task.kind != "classification":
        raise SystemExit(f"{args.task} is a {ctx.task.kind} task; this benchmark probes classification features")
    model = build_classifier(ctx.source, "pretrained", num_classes=0, seed=args.seed)
    sub = ctx.labelled(args.seed)
    probe = LogisticRegression(ctx.task.num_classes).fit(
        ctx.features(model, "pretrained", args.seed, "train")[sub], ctx.train.labels[sub])
    feats = {"eager": ctx.features(model, "pretrained", args.seed, "test")}

    rng = np.random.default_rng(0)
    calib_idx = np.sort(rng.choice(len(ctx.train), size=min(args.calibration, len(ctx.train)), replace=False))
    calibration = np.ascontiguousarray(ctx.prep(ctx.train.images[calib_idx]).numpy())
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, input_size=args.img_size)
        files = {"ort_fp32": fp32}
        # U8S8 (fast with VNNI) and S8S8 activations, per-channel int8 weights, each calibration method
        for method in args.methods:
            for act in args.activations:
                key = f"ort_int8_{act}_act" + ("" if method == "minmax" else f"_{method}")
                files[key] = Path(tmp) / f"{key}.onnx"
                quantize_onnx(fp32, files[key], calibration, activations=act, method=method)
        for runtime, path in files.items():
            t0 = time.perf_counter()
            feats[runtime] = ort_features(path, ctx.test.images, ctx.prep, ctx.batch_size, args.threads)
            _logger.info("%s: %d test images in %.1f s", runtime, len(ctx.test), time.perf_counter() - t0)

    rows = {rt: classification_metrics(ctx.test.labels, probe.predict_proba(f)) for rt, f in feats.items()}
    host = machine()
    print(f"{args.name} on {args.task} ({args.img_size} px, linear probe on {len(sub)} eager-feature labels, "
          f"{len(ctx.test)} test images); {host}")
    print("| runtime | AUC | ACC | AUC drop vs eager (points) | feature cosine vs eager (min) |")
    print("|---|---|---|---|---|")
    ref = feats["eager"]
    out = {"name": args.name, "task": args.task, "img_size": args.img_size, "label_fraction": args.label_fraction,
           "seed": args.seed, "n_train": len(sub), "n_test": len(ctx.test), "machine": host, "runtimes": {}}
    for rt, m in rows.items():
        f = feats[rt]
        cos = float(np.min(np.sum(f * ref, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)))
        drop = 100 * (rows["eager"]["auc"] - m["auc"])
        out["runtimes"][rt] = {**m, "auc_drop_points": drop, "min_cosine": cos}
        print(f"| {rt} | {m['auc']:.4f} | {m['acc']:.4f} | {drop:+.2f} | {cos:.4f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
