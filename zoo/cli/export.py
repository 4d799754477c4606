"""zoo export: ONNX, verified by onnxruntime (torch imported only when exporting)."""

from __future__ import annotations

import argparse

from ._common import CliError, existing_file, existing_path, output_file, positive_int

__all__ = ["add_parsers"]


# --- export --------------------------------------------------------------------------------------
def _cmd_export(args: argparse.Namespace) -> int:
    from ..export import ExportError, export_onnx
    from ..hub import IntegrityError

    if args.calibration and not args.int8:
        raise CliError("--calibration is the int8 calibration data: add --int8, or leave --calibration out")
    size = args.input_size[0] if args.input_size and len(args.input_size) == 1 else args.input_size
    try:
        result = export_onnx(
            args.name, args.output, input_size=size, batch_size=args.batch_size,
            dynamic_batch=not args.static_batch, dynamic_spatial=args.dynamic_spatial, opset=args.opset,
            features_only=args.features_only, quantize="int8" if args.int8 else None,
            calibration_data=args.calibration, calibration_method=args.calibration_method, verify=not args.no_verify,
            sample=args.sample,
            exporter=args.exporter, verbose=getattr(args, "verbose", False),
        )
    except (ExportError, FileNotFoundError, IntegrityError) as err:
        raise CliError(str(err)) from err
    print(result.summary())
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``export`` subcommand."""
    p = sub.add_parser("export", help="export to ONNX, verified by onnxruntime on real data (optionally int8)")
    p.add_argument("name", help="arch.tag (exports that checkpoint's weights) or arch (randomly initialised)")
    p.add_argument("-o", "--output", required=True, type=output_file, help="the .onnx file to write")
    p.add_argument("--int8", action="store_true", help="static int8 QDQ quantization, calibrated on real data")
    p.add_argument("--calibration", metavar="DIR", type=existing_path, help="images (2D) or NIfTI volumes (3D) to calibrate int8 on "
                   "(default: real data under $ZOO_DATA_DIR)")
    p.add_argument("--opset", type=positive_int,
                   help="ONNX opset (default: the exporter's recommended one; out-of-range values are refused)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="batch of the example input (default 1)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch axis to --batch-size")
    p.add_argument("--dynamic-spatial", action="store_true", help="make the spatial axes dynamic too")
    p.add_argument("--input-size", type=positive_int, nargs="+", metavar="N",
                   help="one size (square / cube), the spatial sizes, or C + spatial (default: the model's)")
    p.add_argument("--features-only", action="store_true", help="export the multi-scale feature maps")
    # no `choices`: zoo.export (torch) is imported only when exporting; export_onnx names the valid methods
    p.add_argument("--calibration-method", default="minmax", metavar="{minmax,percentile,entropy}",
                   help="int8 activation ranges: observed min/max (default), 99.999th percentile, or KL entropy")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the onnxruntime-vs-PyTorch check (then no data is needed: a synthetic input is traced)")
    p.add_argument("--sample", metavar="FILE", type=existing_file,
                   help="an image (2D) or NIfTI volume (3D) to trace and verify on instead of the data under $ZOO_DATA_DIR")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                   help="auto: dynamo, TorchScript only where it fails (default)")
    p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show the exporters' own output and progress logs")
    p.set_defaults(func=_cmd_export)
