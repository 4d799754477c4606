"""zoo verify / download / mirror / push / convert: weight files, their sources and their hashes."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from ..convert.layouts import LAYOUTS, layout_names
from ..meta.registry import get_pretrained_cfg, is_model, list_models
from ._common import CliError, existing_dir, existing_file, output_dir, output_file, read_json_file

__all__ = ["add_parsers"]


# --- verify --------------------------------------------------------------------------------------
def _cmd_verify(args: argparse.Namespace) -> int:
    from collections import Counter

    from ..hub import (
        CheckResult,
        IntegrityError,
        WeightsNotFoundError,
        resolve_weights,
        verify_hf_cache,
        verify_local_copies,
        verify_mirror,
    )

    counts: Counter[str] = Counter()
    if args.mirror:  # check the manifest before anything is printed
        manifest = read_json_file(f"{args.mirror}/manifest.json",
                                  f"recreate it with `zoo mirror NAME --to {args.mirror}`")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict) or not all(
                isinstance(m, dict) and isinstance(m.get("sha256"), str) for m in manifest.get("files", {}).values()):
            raise CliError(f"{args.mirror}/manifest.json is not a zoo mirror manifest (no 'files' with sha256s); "
                           f"recreate it with `zoo mirror NAME --to {args.mirror}`")

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


# --- download / mirror / push ----------------------------------------------------------------------
def _indent(text: str) -> str:
    return "\n".join("         " + line for line in text.splitlines())


def _expand_names(patterns: Sequence[str]) -> list[str]:
    """``hf-hub:`` / ``local-dir:`` names as given; wildcards over registered checkpoints."""
    from ..hub import is_hub_name

    names: list[str] = []
    for pattern in patterns:
        if is_hub_name(pattern):
            names.append(pattern)
            continue
        found = list_models(pattern, pretrained=True)
        if not found:
            get_pretrained_cfg(pattern)  # a mistyped name raises with the closest matches
            raise CliError(f"{pattern!r} has no registered weights; see `zoo list --pretrained`")
        names.extend(n for n in found if n not in names)
    return names


def _needs_convert(name: str) -> str | None:
    """For an official entry that no source can fetch and that has no local copy yet: the note
    naming ``zoo convert``; else None (the entry can be downloaded or mirrored)."""
    from ..hub import IntegrityError, WeightsNotFoundError, is_hub_name, resolve_weights

    if is_hub_name(name):
        return None
    cfg = get_pretrained_cfg(name)
    if not cfg.convert_from or cfg.hf_hub_id or cfg.url:
        return None
    try:
        resolve_weights(cfg, download=False)
    except WeightsNotFoundError:
        return (f"official upstream file, not downloadable: get {cfg.origin or 'it from its authors'} and run "
                f"`zoo convert --from {cfg.convert_from} FILE --name {name}`")
    except IntegrityError:
        return None  # a corrupt local copy: reported as such by download / mirror
    return None


def _plan(patterns: Sequence[str]) -> list[str]:
    """The names to download / mirror: entries a wildcard matched that must be converted first are
    skipped with a note; such an entry named explicitly is an error naming ``zoo convert``."""
    names = []
    for name in _expand_names(patterns):
        note = _needs_convert(name)
        if note is None:
            names.append(name)
        elif name in patterns:
            raise CliError(f"{name} is an {note}")
        else:
            print(f"SKIPPED  {name}\n{_indent(note)}")
    if not names:
        raise CliError(f"nothing to do: every entry matching {' '.join(patterns)} must be converted first "
                       f"(see the notes above)")
    return names


def _cmd_download(args: argparse.Namespace) -> int:
    from ..hub import IntegrityError, WeightsNotFoundError, download

    failed = 0
    for name in _plan(args.names):
        try:
            print(f"OK       {name}  {download(name, force=args.force)}")
        except (WeightsNotFoundError, IntegrityError, ValueError) as err:
            failed += 1
            print(f"FAILED   {name}\n{_indent(str(err))}")
    return 1 if failed else 0


def _cmd_mirror(args: argparse.Namespace) -> int:
    from ..hub import IntegrityError, WeightsNotFoundError, mirror

    names = _plan(args.names)
    try:
        manifest = mirror(names, args.to)
    except (WeightsNotFoundError, IntegrityError, ValueError) as err:
        raise CliError(str(err)) from err
    print(f"mirrored {len(names)} model(s) into {args.to}; manifest {manifest}")
    print(f"on the air-gapped machine: export ZOO_WEIGHTS_DIR={args.to} ZOO_OFFLINE=1; zoo verify --mirror {args.to}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ..export.huggingface import push_to_hub

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
    from ..convert import ConvertError, convert_checkpoint, registry_entry
    from ..hub import MirrorSource, WeightFile

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


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``verify``, ``download``, ``mirror``, ``push`` and ``convert`` subcommands."""
    p = sub.add_parser("verify", help="re-hash the weight file each checkpoint would load (never downloads)")
    p.add_argument("names", nargs="*", help="wildcard filters (default: all)")
    p.add_argument("--cache", action="store_true",
                   help="re-hash every local copy (mirror, weights/, Hugging Face cache, downloads)")
    p.add_argument("--mirror", metavar="DIR", type=existing_dir, help="re-hash every file listed in DIR/manifest.json")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("download", help="fetch and verify weights now (arch.tag patterns or hf-hub:org/name)")
    p.add_argument("names", nargs="+")
    p.add_argument("--force", action="store_true", help="download again even if a copy exists (fixes a corrupt cache)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("mirror", help="copy weights + manifest into a directory for air-gapped use (ZOO_WEIGHTS_DIR)")
    p.add_argument("names", nargs="+")
    p.add_argument("--to", required=True, metavar="DIR", type=output_dir)
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
    p.add_argument("path", type=existing_file, help="the official file (.pt / .bin / .pth)")
    p.add_argument("-o", "--output", type=output_file, help="output .safetensors (default: $ZOO_WEIGHTS_DIR/<registered file>)")
    p.add_argument("--name", help="registry name arch.tag the file is for (default: the official entry)")
    p.set_defaults(func=_cmd_convert)
