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
    from ._hub import (
        IntegrityError,
        WeightsNotFoundError,
        resolve_weights,
        verify_hf_cache,
        verify_local_copies,
    )

    names = list_models(args.names or "*", pretrained=True)
    failed = checked = 0
    for name in names:
        cfg = get_pretrained_cfg(name)
        if args.cache:  # every local copy, in every source
            results = verify_local_copies(cfg)
            if not results:
                print(f"ABSENT   {name}  (no local copy)")
            for res in results:
                checked += 1
                failed += res.status != "ok"
                print(f"{res.status.upper():<8} {name}  {res.path}" + (f"\n{_indent(res.detail)}" if res.status != "ok" else ""))
            continue
        checked += 1
        try:  # the copy a load would use, re-hashed; never downloads
            path = resolve_weights(cfg, download=False, use_stamp=False)
            print(f"OK       {name}  {path}")
        except WeightsNotFoundError:
            if cfg.hf_hub_id or cfg.url:
                print(f"REMOTE   {name}  (not downloaded yet: `zoo download {name}`)")
            elif cfg.is_official:
                print(f"ABSENT   {name}  (official: convert it with `zoo convert`)")
            else:
                failed += 1
                print(f"MISSING  {name}")
        except IntegrityError as err:
            failed += 1
            print(f"CORRUPT  {name}\n{_indent(str(err))}")
    if args.cache:
        for res in verify_hf_cache():
            checked += 1
            failed += res.status != "ok"
            print(f"{res.status.upper():<8} {res.name}  {res.path}" + (f"\n{_indent(res.detail)}" if res.status != "ok" else ""))
    if args.mirror:
        from ._hub import verify_mirror

        for res in verify_mirror(args.mirror):
            checked += 1
            failed += res.status != "ok"
            print(f"{res.status.upper():<8} {res.name}  {res.path}" + (f"\n{_indent(res.detail)}" if res.status != "ok" else ""))
    print(f"{checked - failed} ok, {failed} failed")
    return 1 if failed else 0


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
