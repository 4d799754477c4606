"""zoo eval / gradcam / report: the evaluation harness and its results (torch imported on use)."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import (
    CliError,
    existing_file,
    existing_path,
    fraction,
    nonnegative_float,
    nonnegative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    read_json_file,
)

__all__ = ["add_parsers"]


def _check_weights(name: str, checkpoint_path: str | None) -> None:
    """Load the weights once before any data is read: a corrupt, mismatched or malformed file fails in
    seconds with its own error (IntegrityError, CheckpointError), not after the data is loaded."""
    from ..eval.harness import resolve_source
    from ..models.builder import create_model

    source = resolve_source(name, checkpoint_path)
    if source.has_pretrained:
        create_model(name, pretrained=checkpoint_path is None, checkpoint_path=checkpoint_path)


_TASK_ONLY = (("robustness", "--robustness"), ("max_train", "--max-train"), ("max_test", "--max-test"),
              ("checkpoint_path", "--checkpoint-path"), ("no_cache", "--no-cache"), ("out", "--out"))
_DATA_ONLY = (("test", "--test"), ("test_fraction", "--test-fraction"), ("masks", "--masks"),
              ("image_root", "--image-root"), ("scale", "--scale"), ("overwrite", "--overwrite"))


def _eval_data(args: argparse.Namespace) -> int:
    """``zoo eval NAME --data PATH``: the comparison engine for one checkpoint and its random init."""
    from pathlib import Path

    from ..eval.compare import CompareConfig, data_name
    from .compare import fill_data_defaults, run_engine

    used = [flag for name, flag in _TASK_ONLY if getattr(args, name)]
    if args.precision != "fp32":
        used.append("--precision")
    if used:
        raise CliError(f"{', '.join(used)} appl{'ies' if len(used) == 1 else 'y'} to the built-in tasks (--task); "
                       f"drop {'it' if len(used) == 1 else 'them'} with --data (results go to --out-dir)")
    args = fill_data_defaults(args)
    pct = f"{args.label_fraction * 100:g}".replace(".", "p")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in args.name)
    out = Path(args.out_dir) / f"{safe}__{data_name(args.data)}__{args.protocol}__{pct}pct"
    config = CompareConfig(
        pattern=args.name, data=args.data, out=str(out), test=args.test, test_fraction=args.test_fraction,
        label_fractions=(args.label_fraction,), protocol=args.protocol, seeds=args.seeds, masks=args.masks,
        image_root=args.image_root, epochs=args.epochs or 20, batch_size=args.batch_size or 16,
        lr=args.lr or 1e-3, weight_decay=args.weight_decay, img_size=args.img_size, scale=args.scale,
        single=True, overwrite=args.overwrite,
    )
    return run_engine(config, getattr(args, "argv", sys.argv[1:]), args.threads)


def _cmd_eval(args: argparse.Namespace) -> int:
    import shlex

    from ..eval.harness import EvalConfig, default_output_path, run_eval, save_results, set_threads

    if args.data is not None:
        return _eval_data(args)
    used = [flag for name, flag in _DATA_ONLY if getattr(args, name)]
    if used:
        raise CliError(f"{', '.join(used)} appl{'ies' if len(used) == 1 else 'y'} to your own data (--data); "
                       f"drop {'it' if len(used) == 1 else 'them'} with --task")

    try:
        set_threads(args.threads)
    except ValueError as err:
        raise CliError(str(err)) from err
    _check_weights(args.name, args.checkpoint_path)
    config = EvalConfig(
        model=args.name, task=args.task, protocol=args.protocol, label_fraction=args.label_fraction,
        seeds=args.seeds, epochs=args.epochs, img_size=args.img_size, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else EvalConfig.lr,
        weight_decay=args.weight_decay, max_train=args.max_train, max_test=args.max_test,
        checkpoint_path=args.checkpoint_path, robustness=args.robustness, cache=not args.no_cache,
        precision=args.precision,
    )
    try:
        results = run_eval(config, invocation=shlex.join(["zoo", *getattr(args, "argv", sys.argv[1:])]))
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    out = save_results(results, args.out or default_output_path(config, args.out_dir))
    for arm, run in results["runs"].items():
        cells = ", ".join(f"{m.upper()} {run['mean'][m]:.4f} ± {run['std'][m]:.4f}" for m in results["metrics"])
        print(f"{arm:<12} {cells}")
    print(f"{len(results['seeds'])} seed(s), {results['wall_time_s']:.1f} s; results written to {out}")
    return 0


def _cmd_gradcam(args: argparse.Namespace) -> int:
    from ..eval.gradcam import gradcam_figure

    _check_weights(args.name, args.checkpoint_path)
    try:
        path = gradcam_figure(args.name, args.task, args.output, n_images=args.n_images, img_size=args.img_size,
                              checkpoint_path=args.checkpoint_path, max_train=args.max_train, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    print(f"Grad-CAM figure written to {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .. import report

    loaded = []
    for path in args.results:
        data = read_json_file(path, "give the JSON files `zoo eval` writes")
        if not isinstance(data, dict):
            raise CliError(f"{path} holds a JSON {type(data).__name__}, not a zoo eval results object; "
                           f"give the JSON files `zoo eval` writes")
        if data.get("format") != "zoo-eval/1" or not isinstance(data.get("runs"), dict):
            raise CliError(f"{path} is not a zoo eval results file (format zoo-eval/1); produce it with `zoo eval`")
        loaded.append(data)
    try:
        results = report.load_results(loaded)
        if args.plot:
            report.plot_label_fractions(results, args.plot)
        if args.metrics:
            print(json.dumps(report.results_to_metrics(results), indent=2))
            return 0
        text = report.model_card_results(results, plot_path=args.plot, gradcam_path=args.gradcam)
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from err
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise CliError(f"a results file is incomplete or malformed ({type(err).__name__}: {err}); "
                       f"write it again with `zoo eval`") from err
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


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..eval import TASK_NAMES
    from .compare import add_data_arguments

    p = sub.add_parser("eval", help="evaluate a checkpoint on a downstream task or on your data, paired with random init",
                       description="Evaluate NAME, paired with its random init (same seeds, protocol and budget), on "
                                   "a built-in task (--task) or on your own labelled data (--data: the `zoo compare` "
                                   "engine for one checkpoint; class folders, a CSV, images/ + masks/, NIfTI).")
    p.add_argument("name", help="arch or arch.tag (see `zoo list`)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", choices=TASK_NAMES, help="a built-in task")
    what.add_argument("--data", type=existing_path, default=None,
                      help="your data: class folders, labels CSV (2D or NIfTI), or images/ + masks/ (segmentation)")
    p.add_argument("--protocol", choices=("linear", "finetune"), default="linear",
                   help="linear: frozen backbone + logistic regression (segmentation: frozen encoder); "
                   "finetune: the whole network")
    p.add_argument("--label-fraction", type=fraction, default=1.0, help="fraction of training labels (stratified)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (0 .. N-1)")
    p.add_argument("--epochs", type=positive_int, help="fine-tuning / segmentation epochs (default: per task)")
    p.add_argument("--img-size", type=positive_int, help="input size (default: per task; crop size for segmentation)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float, default=None,
                   help="AdamW learning rate (finetune, segmentation; default 5e-4 with --task, 1e-3 with --data)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.05)
    p.add_argument("--max-train", type=positive_int, help="keep a stratified subset of this many training samples")
    p.add_argument("--max-test", type=positive_int, help="keep a stratified subset of this many test samples")
    p.add_argument("--checkpoint-path", type=existing_file, help="a local safetensors file for NAME (instead of registered weights)")
    p.add_argument("--robustness", action="store_true", help="also score blurred, noisy, low-contrast and JPEG test images")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="autocast of the training loops (finetune, segmentation): fp32 or bf16 (CPU)")
    p.add_argument("--threads", type=positive_int,
                   help="torch threads for feature extraction and fine-tuning (default: the CPUs this process may "
                        "use); the linear probe's fit always runs on one")
    p.add_argument("--out", type=output_file,
                   help="results JSON (default: OUT_DIR/<name>__<task>__<protocol>__<pct>pct[__<size>px].json)")
    p.add_argument("--out-dir", type=output_dir, default="zoo-results",
                   help="directory of the results JSON when --out is not given (default: ./zoo-results); with --data "
                        "the run goes to OUT_DIR/<name>__<data name>__<protocol>__<pct>pct/")
    add_data_arguments(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("gradcam", help="Grad-CAM figure of a few test images, checkpoint vs random init")
    p.add_argument("name")
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("-o", "--output", required=True, type=output_file, help="PNG path")
    p.add_argument("--n-images", type=positive_int, default=4)
    p.add_argument("--img-size", type=positive_int, help="input size (default 224 px; 64^3 voxels for 3D tasks)")
    p.add_argument("--checkpoint-path", type=existing_file, help="a local safetensors file for NAME")
    p.add_argument("--max-train", type=positive_int, help="fit the linear probe on this many training images")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=_cmd_gradcam)

    p = sub.add_parser("report", help="results files -> model-card markdown, plot, or registry metrics")
    p.add_argument("results", nargs="+", type=existing_file, help="JSON files written by `zoo eval`")
    p.add_argument("--markdown", type=output_file, help="write the markdown here instead of printing it")
    p.add_argument("--plot", type=output_file, help="also write a PNG of the metric vs label fraction")
    p.add_argument("--gradcam", type=existing_file, help="a PNG drawn by `zoo gradcam` to show (with its command) in the markdown")
    p.add_argument("--card", type=existing_file, help="replace the checkpoint's block in this model card (between its "
                                  "'<!-- zoo report NAME: begin/end -->' lines)")
    p.add_argument("--metrics", action="store_true", help="print the registry `metrics` dict (JSON) instead")
    p.set_defaults(func=_cmd_report)
