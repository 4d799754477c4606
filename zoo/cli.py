"""The ``zoo`` command. Each subcommand is one ``_cmd_*`` handler; heavy modules are imported inside it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._pretrained import PretrainedCfg
from ._registry import UnknownModelError, get_arch_entry, get_pretrained_cfg, list_models

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
    from ._hub import IntegrityError, WeightsNotFoundError, resolve_weights

    names = list_models(args.names or "*", pretrained=True)
    failed = 0
    for name in names:
        cfg = get_pretrained_cfg(name)
        try:
            path = resolve_weights(cfg)
            print(f"OK       {name}  {path}")
        except WeightsNotFoundError:
            state = "MISSING " if not cfg.is_official else "ABSENT  "
            failed += not cfg.is_official
            print(f"{state} {name}" + ("  (official: convert it with `zoo convert`)" if cfg.is_official else ""))
        except IntegrityError as err:
            failed += 1
            print(f"CORRUPT  {name}  {str(err).splitlines()[0]}")
    print(f"{len(names) - failed} ok, {failed} failed")
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
        results = run_eval(config, invocation=shlex.join(["zoo", *sys.argv[1:]]))
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
        text = report.model_card_results(results, plot_path=args.plot)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    if args.markdown:
        from pathlib import Path

        Path(args.markdown).write_text(text)
        print(f"markdown written to {args.markdown}")
    else:
        print(text)
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
    p.add_argument("--out", help="results JSON (default: results/<name>__<task>__<protocol>__<pct>pct.json)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("gradcam", help="Grad-CAM figure of a few test images, checkpoint vs random init")
    p.add_argument("name")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("-o", "--output", required=True, help="PNG path")
    p.add_argument("--n-images", type=int, default=4)
    p.add_argument("--img-size", type=int, help="input size (default 224)")
    p.add_argument("--checkpoint-path")
    p.add_argument("--max-train", type=int, help="fit the linear probe on this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_gradcam)

    p = sub.add_parser("report", help="results files -> model-card markdown, plot, or registry metrics")
    p.add_argument("results", nargs="+", help="JSON files written by `zoo eval`")
    p.add_argument("--markdown", help="write the markdown here instead of printing it")
    p.add_argument("--plot", help="also write a PNG of the metric vs label fraction")
    p.add_argument("--metrics", action="store_true", help="print the registry `metrics` dict (JSON) instead")
    p.set_defaults(func=_cmd_report)


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

    p = sub.add_parser("verify", help="hash every registered weight file and report each")
    p.add_argument("names", nargs="*", help="wildcard filters (default: all)")
    p.set_defaults(func=_cmd_verify)

    _add_eval_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UnknownModelError, CliError) as err:
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
