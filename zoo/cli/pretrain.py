"""zoo pretrain: a self-supervised method on a folder of images or CT volumes."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    CliError,
    existing_path,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    positive_float,
    positive_int,
    spacing_value,
    unit_interval,
)

__all__ = ["add_parsers"]


# --flag -> PretrainConfig field, where the names differ
_FIELD = {"hparam": "hparams", "model_kwarg": "model_kwargs", "data_option": "data_options", "no_progress": "progress"}

# how far and how a continued run goes (not what it is): not read back from run.json
_RUNTIME = {"max_steps", "workers", "progress", "resume", "out"}


def _explicit(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The config fields given on the command line (``--flag`` or ``--flag=value``)."""
    given = set()
    for action in parser._actions:
        if any(a == opt or a.startswith(opt + "=") for opt in action.option_strings for a in argv):
            given.add(_FIELD.get(action.dest, action.dest))
    return given


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import os
    import shlex

    from ..data.datasets import DatasetError
    from ..train.pretrain import PretrainConfig, PretrainError, load_run_config, parse_hparams, pretrain

    if args.recipe:
        args = _with_recipe(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    argv = shlex.join(args.argv)
    command = f"torchrun --nproc_per_node={world} -m zoo.cli {argv}" if world > 1 else f"zoo {argv}"
    try:
        if args.out is None:
            raise CliError("zoo pretrain needs --out RUN (the run directory)")
        fields = _config_fields(args, parse_hparams)
        if args.resume:
            # the run's own arguments; those given again must agree (the checkpoint check names any that differ)
            saved = load_run_config(args.out)
            given = _explicit(args.parser, args.argv[1:])
            fields = {k: (v if k in given or k in _RUNTIME else saved.get(k, v)) for k, v in fields.items()}
            fields.update(out=args.out, resume=True, command=saved.get("command") or command)
        else:
            missing = [f"--{k}" for k in ("method", "arch", "data") if fields[k] is None]
            if missing:
                raise CliError(f"zoo pretrain needs {', '.join(missing)} (or --recipe NAME; or --out RUN --resume "
                               f"to continue a run)")
            fields["command"] = command
        cfg = PretrainConfig(**fields)
        result = pretrain(cfg)
    except (PretrainError, DatasetError, ValueError) as err:
        raise CliError(str(err)) from err
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result.steps}/{result.total_steps} steps, {result.images_per_s:.1f} images/s, "
              f"{result.wall_time_s:.0f} s")
        print(f"weights: {result.weights}\nconfig:  {result.pretrained_cfg}")
    return 0


def _with_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` re-parsed with the recipe's arguments first: flags given on the command line override them
    (``--hparam`` etc. add to or replace single keys); ``--out`` defaults to ``runs/NAME``."""
    from ..meta.recipes import RecipeError, recipe_args

    try:
        base = recipe_args(args.recipe)
    except RecipeError as err:
        raise CliError(str(err)) from None
    user = list(args.argv[1:])
    i = next(i for i, a in enumerate(user) if a == "--recipe" or a.startswith("--recipe="))
    del user[i:i + (1 if "=" in user[i] else 2)]
    if args.out is None:
        user += ["--out", f"runs/{args.recipe}"]
    parser: argparse.ArgumentParser = args.parser
    new = parser.parse_args(base + user)
    new.argv, new.parser, new.recipe = args.argv, parser, None
    return new


def _config_fields(args: argparse.Namespace, parse_hparams: Any) -> dict[str, Any]:
    if args.spacing != ["native"] and (len(args.spacing) != 3 or "native" in args.spacing):
        raise CliError(f"--spacing needs 3 positive values (mm) or 'native', got {' '.join(args.spacing)}")
    spacing = None if args.spacing == ["native"] else tuple(float(s) for s in args.spacing)
    if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
        raise CliError(f"--spacing needs 3 positive values (mm) or 'native', got {args.spacing}")
    return dict(
        method=args.method, arch=args.arch, data=args.data, out=args.out, img_size=args.img_size,
        cube_size=tuple(args.cube_size), spacing=spacing, samples_per_volume=args.samples_per_volume,
        data_kind=args.data_kind, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, weight_decay=args.weight_decay, momentum=args.momentum,
        warmup_steps=args.warmup_steps, init_from=args.init_from, bn_only=args.bn_only, seed=args.seed,
        resume=args.resume, max_steps=args.max_steps, workers=args.workers, ckpt_every=args.ckpt_every,
        channels_last=args.channels_last, fp16=args.fp16, precision=args.precision, device=args.device,
        hparams=parse_hparams(args.hparam),
        model_kwargs=parse_hparams(args.model_kwarg, "--model-kwarg"),
        data_options=parse_hparams(args.data_option, "--data-option"),
        progress=not args.no_progress, tag=args.tag, modality=args.modality,
        license_data=args.license_data, license_weights=args.license_weights,
    )


def _methods_epilog() -> str:
    from ..methods import METHOD_SUMMARIES

    width = max(map(len, METHOD_SUMMARIES))
    return "methods:\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in METHOD_SUMMARIES.items())


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from ..methods import METHOD_SUMMARIES

    p = sub.add_parser("pretrain", help="self-supervised pretraining (also under torchrun for DDP)",
                       description="Pretrain a backbone with a self-supervised method; writes a log, "
                                   "resumable checkpoints, <network>.safetensors and pretrained_cfg.json to --out.",
                       epilog=_methods_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", metavar="METHOD", help=f"one of {', '.join(METHOD_SUMMARIES)} (listed below)")
    p.add_argument("--arch",
                   help="a zoo network, e.g. resnet18, unet_resnet18, unet3d_small_seg (zoo 0.1 names still work)")
    p.add_argument("--data", type=existing_path, help="an image folder, a MedMNIST .npz, or a folder of NIfTI CT volumes")
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="a reference recipe (zoo/recipes/NAME.toml, e.g. simclr_kermany); other flags override it")
    p.add_argument("--out", type=output_dir, help="run directory, e.g. runs/simclr_kermany (default with --recipe: runs/NAME)")
    p.add_argument("--data-kind", default="auto", choices=["auto", "folder", "fundus", "medmnist", "nifti"])
    p.add_argument("--img-size", type=positive_int, default=224, help="2D image size (default 224)")
    p.add_argument("--cube-size", type=positive_int, nargs=3, default=[64, 64, 32], metavar=("X", "Y", "Z"),
                   help="3D cube size in voxels (default 64 64 32)")
    p.add_argument("--spacing", nargs="+", type=spacing_value, default=["1", "1", "1"],
                   help="CT voxel spacing in mm to resample to (3 values, default 1 1 1) or 'native'")
    p.add_argument("--samples-per-volume", type=positive_int, default=64, help="CT cubes per volume per epoch")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=32, help="per process")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default: the method's recipe)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default=None, help="default: the method's recipe")
    p.add_argument("--weight-decay", type=nonnegative_float, default=None)
    p.add_argument("--momentum", type=unit_interval, default=None, help="SGD momentum")
    p.add_argument("--warmup-steps", type=nonnegative_int, default=0, help="linear warm-up before the cosine schedule")
    p.add_argument("--init-from", default=None,
                   help="HPT: start the backbone from a zoo checkpoint (arch.tag), a .safetensors file or a run dir")
    p.add_argument("--bn-only", action="store_true", help="with --init-from: train only the backbone's norm layers")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint; its arguments are read from "
                        "--out/run.json (those given again must agree)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps (schedule unchanged)")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="data loader worker processes")
    p.add_argument("--ckpt-every", type=positive_int, default=500, help="checkpoint every K steps (and at each epoch end)")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="channels_last memory format (default: on)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--fp16", action="store_true", help="export the backbone in float16")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="training precision: autocast dtype (bf16: CPU or CUDA; fp16: CUDA, with a grad scaler); "
                        "exported weights stay fp32 (or --fp16)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda when available (under torchrun: one GPU per process, nccl), else cpu")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyper-parameter (JSON value, type-checked), repeatable, e.g. --hparam queue_size=4096")
    p.add_argument("--model-kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="network argument for create_model (JSON value), repeatable, e.g. --model-kwarg norm=bn")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method's data setting (SWCL's pseudo-labeller / patch stages), repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tag", default=None, help="registry tag of the exported weights (default: from --out)")
    p.add_argument("--modality", default=None, help="cxr, fundus, ct (default: guessed from --data)")
    p.add_argument("--license-data", default="", help="licence of the pretraining data, for the registry entry")
    p.add_argument("--license-weights", default="", help="licence of the weights, for the registry entry")
    p.set_defaults(func=_cmd_pretrain, parser=p)
