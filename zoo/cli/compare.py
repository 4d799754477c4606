"""zoo compare: which starting weights for your data (every matching checkpoint + random init, seeds, ties).

The engine (:mod:`zoo.eval.compare`) also serves ``zoo eval NAME --data PATH`` (:mod:`zoo.cli.evaluate`);
both print the ranked table and write ``compare.json``, ``compare.md`` and ``compare.png``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from ._common import (
    CliError,
    existing_dir,
    existing_path,
    nonnegative_float,
    output_dir,
    positive_float,
    positive_int,
)

__all__ = ["add_parsers", "add_data_arguments", "fill_data_defaults", "label_fractions", "held_out_fraction",
           "run_engine"]


def label_fractions(text: str) -> tuple[float, ...]:
    """argparse ``type=``: ``0.01,0.1,1`` -> a sorted tuple of fractions in (0, 1]."""
    from ..eval.compare import CompareError, parse_fractions

    try:
        return parse_fractions(text)
    except CompareError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def held_out_fraction(text: str) -> float:
    """argparse ``type=``: a share in (0, 1) held out for testing."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number expected, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), e.g. 0.2; got {text}")
    return value


def _progress(record: dict[str, Any]) -> None:
    metric = "dice" if "dice" in record else "auc"
    time_s = record.get("train_s", record.get("cell_s", 0.0))
    print(f"  {record['label']}, {record['label_fraction']:g} of the labels, seed {record['seed']}: "
          f"{metric.upper()} {record[metric]:.4f} ({time_s:.1f} s)", file=sys.stderr, flush=True)


def run_engine(config: Any, argv: list[str], threads: int | None) -> int:
    """Run ``config`` (a :class:`zoo.eval.compare.CompareConfig`), print the table and where the files are."""
    from ..data.errors import DatasetError
    from ..eval.compare import JSON_NAME, MD_NAME, PNG_NAME, CompareError, markdown_tables, run_compare
    from ..eval.finetune import FinetuneError
    from ..eval.harness import set_threads
    from ..hub import IntegrityError

    try:
        set_threads(threads)
    except ValueError as err:
        raise CliError(str(err)) from err
    try:
        results = run_compare(config, invocation=shlex.join(["zoo", *argv]), on_cell=_progress)
    except (CompareError, DatasetError, FinetuneError, IntegrityError) as err:
        raise CliError(str(err)) from err
    print(markdown_tables(results), end="")
    out = config.output_dir()
    print(f"written: {out / JSON_NAME}, {out / MD_NAME}, {out / PNG_NAME}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from ..eval.compare import CompareConfig

    args = fill_data_defaults(args)
    config = CompareConfig(
        pattern=args.pattern, data=args.data, out=args.out, test=args.test, test_fraction=args.test_fraction,
        label_fractions=args.label_fractions, protocol=args.protocol, seeds=args.seeds, masks=args.masks,
        image_root=args.image_root, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, img_size=args.img_size, scale=args.scale, overwrite=args.overwrite,
    )
    return run_engine(config, args.argv, args.threads)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data options ``zoo compare`` and ``zoo eval --data`` share (``--data`` itself excepted)."""
    p.add_argument("--test", type=existing_path, default=None,
                   help="a held-out test set in the same layout (default: a stratified --test-fraction per seed)")
    p.add_argument("--test-fraction", type=held_out_fraction, default=None,
                   help="share of --data held out for testing, stratified and seeded per seed (default 0.2)")
    p.add_argument("--masks", type=existing_dir, default=None,
                   help="segmentation: the mask folder when --data is the image folder")
    p.add_argument("--image-root", type=existing_dir, default=None, help="CSV: the folder its paths are relative to")
    p.add_argument("--scale", type=positive_float, default=None,
                   help="2D segmentation: rescale whole images first (e.g. 0.5 for large photos)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace another comparison held in the output directory (the same comparison with more "
                        "--seeds or other --label-fractions is extended without it, reusing its cells)")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``compare`` subcommand."""
    p = sub.add_parser(
        "compare", help="which starting weights for your data: every matching checkpoint and random init, ranked",
        description="Evaluate every registered checkpoint matching PATTERN (network.tag wildcards, e.g. '*', "
                    "'resnet18.*', '*fundus*') that fits the data (2D/3D, classification/segmentation), and one "
                    "random init per architecture, on your data: the same seeded split and labelled subset for every "
                    "arm of a seed; a ranked table per label fraction (mean ± sd, gain over random init, cost; arms "
                    "that a paired t-test cannot tell apart share a rank, '=1'). Writes OUT/compare.json, "
                    "compare.md and compare.png; re-running the same command continues an interrupted run.")
    p.add_argument("pattern", help="wildcard over `zoo list --pretrained` names; quote it: '*fundus*'")
    p.add_argument("--data", required=True, type=existing_path,
                   help="class-folder directory, labels CSV (2D images or NIfTI), or directory with images/ + masks/")
    p.add_argument("--label-fractions", type=label_fractions, default=(1.0,),
                   help="comma-separated shares of the training labels, each in (0, 1] (default 1)")
    p.add_argument("--protocol", choices=("linear", "finetune"), default="linear",
                   help="linear: frozen features + logistic regression (classification); finetune: the whole network "
                        "(segmentation data: finetune only)")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (0 .. N-1; default 3)")
    add_data_arguments(p)
    p.add_argument("--epochs", type=positive_int, default=20, help="finetune: epochs (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="finetune: batch size (default 16)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="finetune: peak AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.05, help="finetune: AdamW weight decay")
    p.add_argument("--img-size", type=positive_int, default=None,
                   help="segmentation: training crop (2D, multiple of 32, default 128) or cube edge (3D)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: the CPUs this process may use)")
    p.add_argument("--out", type=output_dir, default=None,
                   help="output directory (default ./zoo-results/compare-<data name>; never the repository's results/)")
    p.set_defaults(func=_cmd_compare)


def fill_data_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the shared data options' defaults (they default to None so that ``zoo eval`` can tell them apart)."""
    if args.test_fraction is None:
        args.test_fraction = 0.2
    if args.scale is None:
        args.scale = 1.0
    return args
