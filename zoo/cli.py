"""The ``zoo`` command. Each subcommand is one ``_cmd_*`` handler; heavy modules are imported inside it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence

from . import __version__
from ._pretrained import PretrainedCfg
from ._registry import UnknownModelError, get_arch_entry, get_pretrained_cfg, is_model, list_models
from .convert.layouts import LAYOUTS, layout_names

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# --- list ----------------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        print(f"no models match {args.pattern!r}" + (" with weights" if args.pretrained else ""), file=sys.stderr)
        return 1
    width = max(len(n) for n in names)
    for name in names:
        cfg = get_pretrained_cfg(name)
        if args.pretrained:
            status = "verified" if cfg.verified else "unverified"
            print(f"{name:<{width}}  {cfg.method:<8} {cfg.modality:<7} {status:<10} {cfg.license_weights}")
        else:
            print(f"{name:<{width}}  {get_arch_entry(name)[2]}")
    return 0


# --- info ----------------------------------------------------------------------------------------
def _format_intensity(cfg: PretrainedCfg) -> str:
    it = cfg.intensity
    if it.kind == "mean_std":
        return f"scale to [0, 1], then normalise: mean {it.mean}, std {it.std}"
    if it.kind == "hu_window":
        return f"CT window [{it.hu_min:g}, {it.hu_max:g}] HU -> [0, 1]"
    return {"zscore": "per-image z-score", "unit": "scale to [0, 1]"}[it.kind]


def _usage(cfg: PretrainedCfg) -> str:
    shape = ", ".join(str(s) for s in (1, *cfg.input_size))
    pre = ", pretrained=True" if cfg.has_weights else ""
    return (
        "import torch, zoo\n"
        f'model = zoo.create_model("{cfg.name}"{pre}, num_classes=2).eval()\n'
        f"logits = model(torch.randn({shape}))\n"
        f'# torch.hub: torch.hub.load("<repo dir>", "{cfg.architecture}", source="local"{pre})'
    )


def _cmd_info(args: argparse.Namespace) -> int:
    cfg = get_pretrained_cfg(args.name)
    if args.json:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    _, _, description = get_arch_entry(cfg.architecture)
    rows: list[tuple[str, str]] = [("name", cfg.name), ("architecture", f"{cfg.architecture}: {description}")]
    if cfg.has_weights:
        lic = cfg.license_weights
        if cfg.is_official:
            lic = f"{lic}  (official upstream weights; convert them yourself: not redistributed by zoo)"
        rows += [
            ("LICENCE (weights)", lic),
            ("licence (data)", cfg.license_data),
            ("method", cfg.method), ("pretrained on", cfg.pretrain_data), ("modality", cfg.modality),
            ("file", cfg.file or "-"),
            ("hub", f"{cfg.hf_hub_id}@{cfg.hf_hub_revision}" if cfg.hf_hub_id else "-"),
            ("sha256", cfg.sha256 or "unknown"), ("size", f"{cfg.file_size} bytes" if cfg.file_size else "unknown"),
            ("verified", "yes" if cfg.verified else "no"),
        ]
        if cfg.origin:
            rows.append(("origin", cfg.origin))
        if cfg.is_official:
            from ._hub import convert_command

            rows.append(("convert with", convert_command(cfg)))
        if cfg.command:
            rows.append(("made by", cfg.command))
    else:
        rows.append(("weights", "none registered (architecture only); pretrained=False"))
    spatial = "2D" if cfg.spatial_dims == 2 else "3D"
    rows += [
        ("input", f"{spatial}, {cfg.in_chans} channel(s), size {cfg.input_size}"
         + (f", voxel spacing {cfg.voxel_spacing} mm" if cfg.voxel_spacing else "")),
        ("preprocessing", _format_intensity(cfg)),
        ("head", f"{cfg.classifier} ({cfg.num_classes} classes)" if cfg.num_classes else "none (pooled features)"),
        ("licence (code)", cfg.license_code), ("paper", cfg.paper),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if cfg.metrics:
        print("metrics:")
        for key, value in cfg.metrics.items():
            print(f"  {key}: {value}")
    if cfg.notes:
        print(f"notes: {cfg.notes}")
    print("\nusage:\n" + "\n".join("  " + line for line in _usage(cfg).splitlines()))
    return 0


# --- verify --------------------------------------------------------------------------------------
def _cmd_verify(args: argparse.Namespace) -> int:
    from collections import Counter

    from ._hub import (
        CheckResult,
        IntegrityError,
        WeightsNotFoundError,
        resolve_weights,
        verify_hf_cache,
        verify_local_copies,
        verify_mirror,
    )

    counts: Counter[str] = Counter()

    def report(status: str, name: str, where: object = "", detail: str = "") -> None:
        counts[status] += 1
        print(f"{status.upper():<8} {name}  {where}" + (f"\n{_indent(detail)}" if detail else ""))

    def report_all(results: list[CheckResult]) -> None:
        for res in results:
            report(res.status, res.name, res.path, res.detail if res.status != "ok" else "")

    for name in list_models(args.names or "*", pretrained=True):
        cfg = get_pretrained_cfg(name)
        if args.cache:  # every local copy, in every source
            results = verify_local_copies(cfg)
            if not results:
                report("absent", name, "(no local copy)")
            report_all(results)
            continue
        try:  # the copy a load would use, re-hashed; never downloads
            report("ok", name, resolve_weights(cfg, download=False, use_stamp=False))
        except WeightsNotFoundError:
            if cfg.hf_hub_id or cfg.url:
                report("remote", name, f"(not downloaded yet: `zoo download {name}`)")
            elif cfg.is_official:
                report("absent", name, "(official: convert it with `zoo convert`)")
            else:
                report("missing", name)
        except IntegrityError as err:
            report("corrupt", name, detail=str(err))
    if args.cache:
        report_all(verify_hf_cache())
    if args.mirror:
        report_all(verify_mirror(args.mirror))
    failed = counts["corrupt"] + counts["missing"]
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to verify")
    return 1 if failed else 0


# --- eval / gradcam / report ----------------------------------------------------------------------
def _cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    import torch

    from .train.evaluate import EvalConfig, default_output_path, run_eval, save_results

    if args.threads:
        torch.set_num_threads(args.threads)
    config = EvalConfig(
        model=args.name, task=args.task, protocol=args.protocol, label_fraction=args.label_fraction,
        seeds=args.seeds, epochs=args.epochs, img_size=args.img_size, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, max_train=args.max_train, max_test=args.max_test,
        checkpoint_path=args.checkpoint_path, robustness=args.robustness, cache=not args.no_cache,
    )
    try:
        results = run_eval(config, invocation=shlex.join(["zoo", *getattr(args, "argv", sys.argv[1:])]))
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    out = save_results(results, args.out or default_output_path(config))
    for arm, run in results["runs"].items():
        cells = ", ".join(f"{m.upper()} {run['mean'][m]:.4f} ± {run['std'][m]:.4f}" for m in results["metrics"])
        print(f"{arm:<12} {cells}")
    print(f"{len(results['seeds'])} seed(s), {results['wall_time_s']:.1f} s; results written to {out}")
    return 0


def _cmd_gradcam(args: argparse.Namespace) -> int:
    from .train.gradcam import gradcam_figure

    try:
        path = gradcam_figure(args.name, args.task, args.output, n_images=args.n_images, img_size=args.img_size,
                              checkpoint_path=args.checkpoint_path, max_train=args.max_train, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    print(f"Grad-CAM figure written to {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .train import report

    try:
        results = report.load_results(args.results)
        if args.plot:
            report.plot_label_fractions(results, args.plot)
        if args.metrics:
            print(json.dumps(report.results_to_metrics(results), indent=2))
            return 0
        text = report.model_card_results(results, plot_path=args.plot, gradcam_path=args.gradcam)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    if args.markdown:
        from pathlib import Path

        Path(args.markdown).write_text(text)
        print(f"markdown written to {args.markdown}")
    elif not args.card:
        print(text)
    if args.card:
        names = sorted({r["model"] for r in results})
        if len(names) != 1:
            raise CliError(f"--card needs the results of one checkpoint, got {names}")
        try:
            report.update_card(args.card, names[0], text)
        except (ValueError, FileNotFoundError) as err:
            raise CliError(str(err)) from err
        print(f"{args.card}: results block of {names[0]} updated")
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"label fraction must be in (0, 1], e.g. 0.01, 0.1 or 1; got {text}")
    return value


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .train import TASK_NAMES

    p = sub.add_parser("eval", help="evaluate a checkpoint on a downstream task, paired with random init")
    p.add_argument("name", help="arch or arch.tag (see `zoo list`)")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("--protocol", choices=("linear", "finetune"), default="linear",
                   help="linear: frozen backbone + logistic regression (segmentation: frozen encoder); "
                   "finetune: the whole network")
    p.add_argument("--label-fraction", type=_fraction, default=1.0, help="fraction of training labels (stratified)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. N-1)")
    p.add_argument("--epochs", type=int, help="fine-tuning / segmentation epochs (default: per task)")
    p.add_argument("--img-size", type=int, help="input size (default: per task; crop size for segmentation)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (finetune, segmentation)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--max-train", type=int, help="keep a stratified subset of this many training samples")
    p.add_argument("--max-test", type=int, help="keep a stratified subset of this many test samples")
    p.add_argument("--checkpoint-path", help="a local safetensors file for NAME (instead of registered weights)")
    p.add_argument("--robustness", action="store_true", help="also score blurred, noisy, low-contrast and JPEG test images")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--out", help="results JSON (default: results/<name>__<task>__<protocol>__<pct>pct[__<size>px].json)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("gradcam", help="Grad-CAM figure of a few test images, checkpoint vs random init")
    p.add_argument("name")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("-o", "--output", required=True, help="PNG path")
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--img-size", type=int, help="input size (default 224 px; 64^3 voxels for 3D tasks)")
    p.add_argument("--checkpoint-path")
    p.add_argument("--max-train", type=int, help="fit the linear probe on this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_gradcam)

    p = sub.add_parser("report", help="results files -> model-card markdown, plot, or registry metrics")
    p.add_argument("results", nargs="+", help="JSON files written by `zoo eval`")
    p.add_argument("--markdown", help="write the markdown here instead of printing it")
    p.add_argument("--plot", help="also write a PNG of the metric vs label fraction")
    p.add_argument("--gradcam", help="a PNG drawn by `zoo gradcam` to show (with its command) in the markdown")
    p.add_argument("--card", help="replace the checkpoint's block in this model card (between its "
                                  "'<!-- zoo report NAME: begin/end -->' lines)")
    p.add_argument("--metrics", action="store_true", help="print the registry `metrics` dict (JSON) instead")
    p.set_defaults(func=_cmd_report)


# --- export --------------------------------------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> int:
    from ._hub import IntegrityError
    from .export import ExportError, export_onnx

    size = args.input_size[0] if args.input_size and len(args.input_size) == 1 else args.input_size
    try:
        result = export_onnx(
            args.name, args.output, input_size=size, batch_size=args.batch_size,
            dynamic_batch=not args.static_batch, dynamic_spatial=args.dynamic_spatial, opset=args.opset,
            features_only=args.features_only, quantize="int8" if args.int8 else None,
            calibration_data=args.calibration, calibration_method=args.calibration_method, verify=not args.no_verify,
            exporter=args.exporter, verbose=getattr(args, "verbose", False),
        )
    except (ExportError, FileNotFoundError, IntegrityError) as err:
        raise CliError(str(err)) from err
    print(result.summary())
    return 0


# --- download / mirror / push ----------------------------------------------------------------------
def _indent(text: str) -> str:
    return "\n".join("         " + line for line in text.splitlines())


def _expand_names(patterns: Sequence[str]) -> list[str]:
    """``hf-hub:`` / ``local-dir:`` names as given; wildcards over registered checkpoints."""
    from ._hub import is_hub_name

    names: list[str] = []
    for pattern in patterns:
        if is_hub_name(pattern):
            names.append(pattern)
            continue
        found = list_models(pattern, pretrained=True)
        if not found:
            get_pretrained_cfg(pattern)  # a mistyped name raises with the closest matches
            raise CliError(f"{pattern!r} has no registered weights; see `zoo list --pretrained`")
        names.extend(found)
    return names


def _cmd_download(args: argparse.Namespace) -> int:
    from ._hub import IntegrityError, WeightsNotFoundError, download

    failed = 0
    for name in _expand_names(args.names):
        try:
            print(f"OK       {name}  {download(name, force=args.force)}")
        except (WeightsNotFoundError, IntegrityError, ValueError) as err:
            failed += 1
            print(f"FAILED   {name}\n{_indent(str(err))}")
    return 1 if failed else 0


def _cmd_mirror(args: argparse.Namespace) -> int:
    from ._hub import IntegrityError, WeightsNotFoundError, mirror

    names = _expand_names(args.names)
    try:
        manifest = mirror(names, args.to)
    except (WeightsNotFoundError, IntegrityError, ValueError) as err:
        raise CliError(str(err)) from err
    print(f"mirrored {len(names)} model(s) into {args.to}; manifest {manifest}")
    print(f"on the air-gapped machine: export ZOO_WEIGHTS_DIR={args.to} ZOO_OFFLINE=1; zoo verify --mirror {args.to}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ._hf import push_to_hub

    try:
        info = push_to_hub(args.name, args.repo_id, revision=args.revision, private=args.private,
                           create_pr=args.create_pr)
    except (HfHubHTTPError, RuntimeError, ValueError) as err:
        raise CliError(str(err).splitlines()[0]) from err
    print(f"pushed {args.name} to {args.repo_id}: commit {info.oid}")
    if getattr(info, "pr_url", None):
        print(f"pull request: {info.pr_url}")
    print(f"load it with zoo.create_model('hf-hub:{args.repo_id}@{info.oid}', pretrained=True); "
          f"register it with hf_hub_id={args.repo_id!r}, hf_hub_revision={info.oid!r}")
    return 0


# --- convert -------------------------------------------------------------------------------------
def _print_keys(keys: list[str], indent: str = "    ", width: int = 100) -> None:
    """Keys grouped by module: ``up_tr64.bn (5 tensors)``; the full list is in the file's metadata."""
    groups: dict[str, int] = {}
    for key in keys:
        module = key.rpartition(".")[0] or key
        groups[module] = groups.get(module, 0) + 1
    text = ", ".join(f"{m} ({n})" if n > 1 else m for m, n in groups.items())
    print(textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False))


def _cmd_convert(args: argparse.Namespace) -> int:
    from ._hub import MirrorSource, WeightFile
    from .convert import ConvertError, convert_checkpoint, registry_entry

    try:
        result = convert_checkpoint(args.path, args.layout, args.output, args.name)
    except ConvertError as err:
        raise CliError(str(err)) from None
    print(f"converted {result.source} (layout {result.layout}, sha256 {result.source_sha256})")
    print(f"  kept {result.kept} tensors")
    for reason, keys in result.dropped.items():
        print(f"  dropped {len(keys)} on purpose: {reason}:")
        _print_keys(keys)
    if result.ignored:
        print(f"  ignored entries (no weights kept): {', '.join(result.ignored)}")
    print(f"  strict-loaded into: {', '.join(result.validated)}")
    if result.arch_kwargs:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in result.arch_kwargs.items())
        print(f"  note: this checkpoint needs create_model(..., {kwargs})")
    print(f"wrote {result.output} ({result.file_size} bytes)")
    print(f"sha256 {result.sha256}")
    print("registry entry:")
    print(textwrap.indent(registry_entry(result), "  "))
    cfg = get_pretrained_cfg(result.name) if is_model(result.name) else None
    if cfg is not None and cfg.has_weights and MirrorSource().locate(WeightFile.from_cfg(cfg)) is None:
        print(f"note: create_model({result.name!r}, pretrained=True) looks for $ZOO_WEIGHTS_DIR/{cfg.file}; "
              f"set ZOO_WEIGHTS_DIR={result.output.parent} (and keep the file name) to load it")
    return 0


# --- pretrain ------------------------------------------------------------------------------------
def _cmd_pretrain(args: argparse.Namespace) -> int:
    import os
    import shlex

    from .data.datasets import DatasetError
    from .train.pretrain import PretrainConfig, PretrainError, parse_hparams, pretrain

    world = int(os.environ.get("WORLD_SIZE", "1"))
    argv = shlex.join(args.argv)
    command = f"torchrun --nproc_per_node={world} -m zoo.cli {argv}" if world > 1 else f"zoo {argv}"
    spacing = None if args.spacing == ["native"] else tuple(float(s) for s in args.spacing)
    try:
        if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
            raise CliError(f"--spacing needs 3 positive values (mm) or 'native', got {args.spacing}")
        cfg = PretrainConfig(
            method=args.method, arch=args.arch, data=args.data, out=args.out, img_size=args.img_size,
            cube_size=tuple(args.cube_size), spacing=spacing, samples_per_volume=args.samples_per_volume,
            data_kind=args.data_kind, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, weight_decay=args.weight_decay, momentum=args.momentum,
            warmup_steps=args.warmup_steps, init_from=args.init_from, bn_only=args.bn_only, seed=args.seed,
            resume=args.resume, max_steps=args.max_steps, workers=args.workers, ckpt_every=args.ckpt_every,
            channels_last=args.channels_last, fp16=args.fp16, hparams=parse_hparams(args.hparam),
            progress=not args.no_progress, tag=args.tag, modality=args.modality,
            license_data=args.license_data, license_weights=args.license_weights, command=command,
        )
        result = pretrain(cfg)
    except (PretrainError, DatasetError, ValueError) as err:
        raise CliError(str(err)) from err
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{result.steps}/{result.total_steps} steps, {result.images_per_s:.1f} images/s, "
              f"{result.wall_time_s:.0f} s")
        print(f"weights: {result.weights}\nconfig:  {result.pretrained_cfg}")
    return 0


def _add_pretrain_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining (also under torchrun for DDP)",
                       description="Pretrain a backbone with a self-supervised method; writes a log, "
                                   "resumable checkpoints, <arch>.safetensors and pretrained_cfg.json to --out.")
    p.add_argument("--method", required=True, help="simclr, mocov2, pcrl, pcrlv2, genesis, ...")
    p.add_argument("--arch", required=True, help="a zoo architecture, e.g. simclr_resnet18, pcrl_unet3d")
    p.add_argument("--data", required=True, help="an image folder, a MedMNIST .npz, or a folder of NIfTI CT volumes")
    p.add_argument("--out", required=True, help="run directory, e.g. runs/simclr_kermany")
    p.add_argument("--data-kind", default="auto", choices=["auto", "folder", "fundus", "medmnist", "nifti"])
    p.add_argument("--img-size", type=int, default=224, help="2D image size (default 224)")
    p.add_argument("--cube-size", type=int, nargs=3, default=[64, 64, 32], metavar=("X", "Y", "Z"),
                   help="3D cube size in voxels (default 64 64 32)")
    p.add_argument("--spacing", nargs="+", default=["1", "1", "1"],
                   help="CT voxel spacing in mm to resample to (3 values, default 1 1 1) or 'native'")
    p.add_argument("--samples-per-volume", type=int, default=64, help="CT cubes per volume per epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the method's recipe)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default=None, help="default: the method's recipe")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up before the cosine schedule")
    p.add_argument("--init-from", default=None,
                   help="HPT: start the backbone from a zoo checkpoint (arch.tag), a .safetensors file or a run dir")
    p.add_argument("--bn-only", action="store_true", help="with --init-from: train only the backbone's norm layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule unchanged)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every K steps (and at each epoch end)")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="channels_last memory format (default: on)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--fp16", action="store_true", help="export the backbone in float16")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyper-parameter (JSON value), repeatable, e.g. --hparam queue_size=4096")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tag", default=None, help="registry tag of the exported weights (default: from --out)")
    p.add_argument("--modality", default=None, help="cxr, fundus, ct (default: guessed from --data)")
    p.add_argument("--license-data", default="", help="licence of the pretraining data, for the registry entry")
    p.add_argument("--license-weights", default="", help="licence of the weights, for the registry entry")
    p.set_defaults(func=_cmd_pretrain)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``zoo`` command."""
    parser = argparse.ArgumentParser(prog="zoo", description="Self-supervised medical-imaging model zoo.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list architectures, or checkpoints with --pretrained")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'pcrl*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names that have weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="metadata, preprocessing, licence, metrics and usage of a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the full pretrained config as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("verify", help="re-hash the weight file each checkpoint would load (never downloads)")
    p.add_argument("names", nargs="*", help="wildcard filters (default: all)")
    p.add_argument("--cache", action="store_true",
                   help="re-hash every local copy (mirror, weights/, Hugging Face cache, downloads)")
    p.add_argument("--mirror", metavar="DIR", help="re-hash every file listed in DIR/manifest.json")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("export", help="export to ONNX, verified by onnxruntime on real data (optionally int8)")
    p.add_argument("name", help="arch.tag (exports that checkpoint's weights) or arch (randomly initialised)")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--int8", action="store_true", help="static int8 QDQ quantization, calibrated on real data")
    p.add_argument("--calibration", metavar="DIR", help="images (2D) or NIfTI volumes (3D) to calibrate int8 on "
                   "(default: real data under $ZOO_DATA_DIR)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's recommended one)")
    p.add_argument("--batch-size", type=int, default=1, help="batch of the example input (default 1)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch axis to --batch-size")
    p.add_argument("--dynamic-spatial", action="store_true", help="make the spatial axes dynamic too")
    p.add_argument("--input-size", type=int, nargs="+", metavar="N",
                   help="one size (square / cube), the spatial sizes, or C + spatial (default: the model's)")
    p.add_argument("--features-only", action="store_true", help="export the multi-scale feature maps")
    # no `choices`: zoo.export (torch) is imported only when exporting; export_onnx names the valid methods
    p.add_argument("--calibration-method", default="minmax", metavar="{minmax,percentile,entropy}",
                   help="int8 activation ranges: observed min/max (default), 99.999th percentile, or KL entropy")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="auto: dynamo, TorchScript only where it fails (default)")
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show the exporters' own output and progress logs")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("download", help="fetch and verify weights now (arch.tag patterns or hf-hub:org/name)")
    p.add_argument("names", nargs="+")
    p.add_argument("--force", action="store_true", help="download again even if a copy exists (fixes a corrupt cache)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("mirror", help="copy weights + manifest into a directory for air-gapped use (ZOO_WEIGHTS_DIR)")
    p.add_argument("names", nargs="+")
    p.add_argument("--to", required=True, metavar="DIR")
    p.set_defaults(func=_cmd_mirror)

    p = sub.add_parser("push", help="publish a checkpoint to the Hugging Face Hub (config.json, safetensors, card)")
    p.add_argument("name")
    p.add_argument("--repo-id", required=True, help="org/name on the Hub")
    p.add_argument("--revision", help="branch to push to (created if needed)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("convert", help="convert an official upstream checkpoint to a zoo safetensors file",
                       description="Read an official checkpoint without running its pickle code, map its keys "
                       "to zoo's, strict-load them and write safetensors. Layouts: "
                       + "; ".join(f"{n}: {lay.description}" for n, lay in LAYOUTS.items()))
    p.add_argument("--from", dest="layout", required=True, choices=layout_names(), help="the official layout")
    p.add_argument("path", help="the official file (.pt / .bin / .pth)")
    p.add_argument("-o", "--output", help="output .safetensors (default: $ZOO_WEIGHTS_DIR/<registered file>)")
    p.add_argument("--name", help="registry name arch.tag the file is for (default: the official entry)")
    p.set_defaults(func=_cmd_convert)

    _add_pretrain_parser(sub)
    _add_eval_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that log how they were run
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UnknownModelError, CliError) as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `zoo list | head`: the reader left, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
