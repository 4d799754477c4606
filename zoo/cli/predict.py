"""zoo predict: a model on images or whole NIfTI volumes (torch imported on use)."""

from __future__ import annotations

import argparse
import json

from ._common import CliError

__all__ = ["add_parsers"]


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..data.errors import DatasetError
    from ..eval.predict import PredictError, load_predictor, predict

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_predictor(args.name)
        dims = model.pretrained_cfg.spatial_dims
        kwargs: dict = {"overlap": args.overlap, "batch_size": args.batch_size, "threshold": args.threshold}
        if dims == 3:
            kwargs.update(output=args.output, roi_size=args.roi_size, mode=args.blend)
            out = args.out or "zoo-predictions"
        else:
            if args.output not in ("labels", "probabilities"):
                raise CliError(f"--output {args.output} is for 3D models; 2D models write labels or probabilities")
            kwargs["probabilities"] = args.output == "probabilities"
            out = args.out or "zoo-predictions"
        results = predict(model, args.inputs, out, **kwargs)
    except (PredictError, DatasetError, ValueError) as err:
        raise CliError(str(err)) from None
    if results and "prediction" in results[0]:  # a classifier (2D or 3D): one row per input
        print(f"{len(results)} {'volumes' if dims == 3 else 'images'}; probabilities written to {out}")
        if args.show:
            print(json.dumps(results[: args.show], indent=1))
    elif dims == 3:
        for r in results:
            print(f"{r['input']} -> {r['output']} ({r['windows']} windows of {r['roi_size']}, {r['wall_time_s']} s)")
    else:
        print(f"{len(results)} masks written to {out}")
    names = model.pretrained_cfg.label_names
    if names and args.output == "labels" and not (results and "prediction" in results[0]):
        # what the values of the written label maps mean; one output channel: 0 / 255 (2D PNG) or 0 / 1 (NIfTI)
        values = list(enumerate(names)) if len(names) > 1 else [(0, "background"), (255 if dims == 2 else 1, names[0])]
        print("labels: " + ", ".join(f"{v} {n}" for v, n in values))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="run a model on images (2D) or whole NIfTI volumes (3D sliding window)",
        description="2D: images or folders -> class probabilities (CSV; JSON when OUT ends in .json) or masks "
        "(PNG in the folder OUT). 3D classifiers: NIfTI volumes -> one row per volume (CSV or JSON), each whole "
        "volume preprocessed as zoo finetune trained on it. 3D segmentation / restoration: NIfTI volumes -> a "
        "NIfTI on each input's grid and affine: reoriented, resampled to the checkpoint's spacing, HU-windowed, "
        "sliding-window inference over the whole volume, then all of it undone.",
    )
    p.add_argument("name", help="the model: local-dir:RUN (from zoo finetune), hf-hub:org/name or arch.tag")
    p.add_argument("inputs", nargs="+", help="image files / folders (2D) or NIfTI volumes / folders (3D)")
    p.add_argument("-o", "--out", help="classifiers (2D and 3D): a CSV/JSON file; 2D segmentation: a folder (masks); "
                   "3D segmentation: a .nii.gz file for one volume, else a folder (default: ./zoo-predictions)")
    p.add_argument("--output", choices=("labels", "probabilities", "image"), default="labels",
                   help="labels (default), probabilities, or image (3D restoration models: back to HU)")
    p.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default 0.25, as MONAI)")
    p.add_argument("--roi-size", type=int, nargs=3, metavar=("X", "Y", "Z"),
                   help="3D window in voxels (default: the checkpoint's input size)")
    p.add_argument("--blend", choices=("gaussian", "constant"), default="gaussian", help="window blending")
    p.add_argument("--batch-size", type=int, default=4, help="windows (or images) per forward pass")
    p.add_argument("--threshold", type=float, help="decision threshold of one-output models (default: the model's, "
                   "else 0.5)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--show", type=int, default=0, help="classifiers: print the first N rows")
    p.set_defaults(func=_cmd_predict)
