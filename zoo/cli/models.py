"""zoo list, zoo info: the registry, torch-free."""

from __future__ import annotations

import argparse
import json
import sys

from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_arch_entry, get_pretrained_cfg, get_tags, list_models, resolve_name

__all__ = ["add_parsers"]


def _table(rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` (the first is the header) in left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _size(cfg: PretrainedCfg) -> str:
    return "x".join(str(s) for s in cfg.input_size[1:])


def _cmd_list(args: argparse.Namespace) -> int:
    meta = dict(method=args.method, modality=args.modality, pretrain_data=args.pretrain_data)
    names = list_models(args.pattern, pretrained=args.pretrained, **meta)
    if not names:
        what = " with weights" if args.pretrained else ""
        what += "".join(f" and {k.replace('_', '-')} {v!r}" for k, v in meta.items() if v)
        hint = "`zoo list --pretrained` shows every network.tag"
        method = args.pattern.split("_")[0].strip("*")
        if list_models(f"{method}*", pretrained=True) == [] and list_models(method=f"{method}*"):
            hint = f"networks are named without their method now: `zoo list --method {method}`"
        print(f"no models match {args.pattern!r}{what}; {hint}", file=sys.stderr)
        return 1
    rows: list[tuple[str, ...]]
    if args.pretrained:
        rows = [("network.tag", "method", "modality", "input", "status", "licence (weights)")]
        for name in names:
            cfg = get_pretrained_cfg(name)
            status = "verified" if cfg.verified else "unverified"
            if cfg.is_official:
                status += " (convert)"
            rows.append((name, cfg.method, cfg.modality, _size(cfg), status, cfg.license_weights))
    else:
        rows = [("network", "default tag", "tags", "description")]
        for name in names:
            tags, default = get_tags(name)
            rows.append((name, default or "-", str(len(tags)), get_arch_entry(name)[2]))
    _table(rows)
    return 0


# --- info ----------------------------------------------------------------------------------------
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
    rows: list[tuple[str, str]] = [("name", cfg.name), ("network", f"{cfg.architecture}: {description}")]
    if "." not in resolve_name(args.name, warn=False):  # a bare network: its weight tags and what it loads
        tags, default = get_tags(cfg.architecture)
        rows.append(("tags", ", ".join(f"{cfg.architecture}.{t}" + (" (default)" if t == default else "")
                                       for t in tags) or "none"))
        rows.append(("default tag", f"{cfg.architecture}.{default} (pretrained=True loads it)" if default
                     else "none: pretrained=True needs a tag (network.tag)"))
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
            from ..hub import convert_command

            rows.append(("convert with", convert_command(cfg)))
        if cfg.command:
            rows.append(("made by", cfg.command))
    else:
        rows.append(("weights", "none registered (architecture only); pretrained=False"))
    spatial = "2D" if cfg.spatial_dims == 2 else "3D"
    rows += [
        ("input", f"{spatial}, {cfg.in_chans} channel(s), size {cfg.input_size}"
         + (f", voxel spacing {cfg.voxel_spacing} mm" if cfg.voxel_spacing else "")),
        ("preprocessing", cfg.intensity.describe()),
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


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``list`` and ``info`` subcommands."""
    p = sub.add_parser("list", help="list networks, or their weights (network.tag) with --pretrained")
    p.add_argument("pattern", nargs="?", default="*", help="wildcard filter on names, e.g. 'unet3d*' or '*.pcrl_*'")
    p.add_argument("--pretrained", action="store_true",
                   help="list every network.tag that has weights, with method, modality, input and licence")
    p.add_argument("--method", help="only weights of this method (wildcards allowed), e.g. pcrl, 'pcrl*'")
    p.add_argument("--modality", help="only weights of this modality (wildcards allowed): cxr, fundus, ct")
    p.add_argument("--pretrain-data", help="only weights pretrained on matching data, e.g. '*kermany*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="metadata, preprocessing, licence, metrics and usage of a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the full pretrained config as JSON")
    p.set_defaults(func=_cmd_info)
