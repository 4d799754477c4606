"""zoo finetune: a checkpoint + your labelled data -> a fine-tuned model directory (``local-dir:RUN``)."""

from __future__ import annotations

import argparse

from ._common import CliError

__all__ = ["add_parsers"]


def _cmd_finetune(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import shlex

    from ..data.errors import DatasetError
    from ..eval.finetune import FinetuneConfig, FinetuneError, run_finetune
    from ..export.huggingface import save_for_hf
    from ..hub import IntegrityError
    from ..models.builder import CheckpointError

    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 speaks for every process
    if args.no_progress:  # no bar: one line per epoch instead (zoo.eval.finetune logs it at INFO)
        logging.getLogger("zoo.eval.finetune").setLevel(logging.INFO)
    config = FinetuneConfig(
        model=args.name, data=args.data, out=args.out, val=args.val, val_fraction=args.val_fraction,
        masks=args.masks, image_root=args.image_root, img_size=args.img_size, scale=args.scale, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, layer_decay=args.layer_decay,
        freeze_encoder=args.freeze_encoder, class_weights=not args.no_class_weights, patience=args.patience,
        pretrained=not args.random_init, checkpoint_path=args.checkpoint_path, seed=args.seed, resume=args.resume,
        stop_after=args.stop_after, progress=not args.no_progress, precision=args.precision,
        label_names=tuple(n.strip() for n in args.label_names.split(",")) if args.label_names is not None else None,
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node={world} -m zoo.cli " if world > 1 else "zoo "
    try:
        result = run_finetune(config, invocation=launcher + shlex.join(args.argv), save=save_for_hf)
    except (FinetuneError, DatasetError, FileNotFoundError, IntegrityError, CheckpointError) as err:
        if not main:  # every process meets the same bad input; one line is enough
            raise SystemExit(2) from None
        raise CliError(str(err)) from err
    if not main:
        return 0
    rec = result.record
    if not result.completed:
        print(f"stopped after epoch {len(rec['history'])} of {config.epochs}; continue with the same command "
              f"and --resume ({result.out})")
        return 0
    print(f"best epoch {rec['best_epoch']} of {len(rec['history'])}"
          + (" (early stop)" if rec["stopped_early"] else "") + f", {rec['wall_time_s']:.0f} s")
    print("validation: " + json.dumps({k: v for k, v in rec["val_metrics"].items() if not isinstance(v, list)}))
    print(f"model: {result.out}  (zoo.create_model('local-dir:{result.out}', pretrained=True))")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``finetune`` subcommand."""
    p = sub.add_parser(
        "finetune", help="fine-tune a checkpoint on your labelled data; writes a model you keep",
        description="Fine-tune NAME on your data: class folders, a CSV of path,label (2D images or NIfTI "
                    "volumes; several labels per row for multi-label), or images/ + masks/ folders (2D "
                    "segmentation, any image size). Writes --out: config.json + model.safetensors (load with "
                    "zoo.create_model('local-dir:OUT', pretrained=True), export with `zoo export local-dir:OUT`) "
                    "and finetune.json (starting weights' sha256, command, validation metrics). Under torchrun "
                    "(torchrun --nproc_per_node=N -m zoo.cli finetune ...) --batch-size is the global batch, "
                    "split across the N processes (DDP on gloo); rank 0 validates and writes --out.")
    p.add_argument("name", help="arch.tag with weights (e.g. resnet18.swcl_fundus64), or arch with --random-init")
    p.add_argument("--data", required=True, help="class-folder directory, labels CSV, or directory with images/ + masks/")
    p.add_argument("--out", required=True, help="run directory to write (outside the repository)")
    p.add_argument("--val", default=None, help="a given validation set, same format (default: split off --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="stratified, seeded validation share (default 0.2)")
    p.add_argument("--masks", default=None, help="segmentation: the mask folder when --data is the image folder")
    p.add_argument("--image-root", default=None, help="CSV: the folder its paths are relative to")
    p.add_argument("--img-size", type=int, default=None,
                   help="input size (default: the checkpoint's); segmentation: training crop (multiple of 32, default 128)")
    p.add_argument("--scale", type=float, default=1.0, help="segmentation: rescale whole images first (e.g. 0.5)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16,
                   help="samples per step (under torchrun: the global batch, split across the processes)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the head (AdamW, cosine)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--layer-decay", type=float, default=1.0,
                   help="layer-wise lr: each earlier block gets this factor times the next one's (default 1: off)")
    p.add_argument("--freeze-encoder", action="store_true", help="train the head only (U-Net: decoder and head)")
    p.add_argument("--no-class-weights", action="store_true", help="unweighted loss (default: inverse class frequency)")
    p.add_argument("--patience", type=int, default=8, help="early stopping: epochs without a better validation loss")
    p.add_argument("--random-init", action="store_true", help="the same recipe from random init (the baseline)")
    p.add_argument("--checkpoint-path", default=None, help="a local .safetensors file for NAME's architecture")
    p.add_argument("--label-names", default=None, metavar="A,B,...",
                   help="segmentation: names of the foreground labels in order (label 1, 2, ...), e.g. "
                        "liver,spleen,kidneys; saved in the model (default label_1, ... / foreground)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after epoch N (continue later with --resume)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="training autocast: fp32 (default) or bf16 (CPU); validation runs in fp32 "
                        "(fp16 needs CUDA, which zoo finetune does not use)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: one line per epoch instead")
    p.set_defaults(func=_cmd_finetune)
