"""Results files (``zoo eval``) -> registry ``metrics``, MODEL_CARD.md tables and a label-fraction plot.

- :func:`results_to_metrics`: the ``metrics`` dict of a :class:`~zoo.PretrainedCfg` (checkpoint vs
  random init, mean and std over seeds, keyed ``task/protocol/percent``);
- :func:`results_table_markdown`: results vs random init, then the published anchors of each task
  (:mod:`zoo.report.anchors`);
- :func:`robustness_table_markdown`: the metric under each corruption and severity, both arms;
- :func:`plot_label_fractions`: a PNG of the headline metric vs label fraction (matplotlib, Agg);
- :func:`gradcam_markdown`: a ``zoo gradcam`` figure with the command that drew it;
- :func:`model_card_results`: all of it as one markdown block; :func:`update_card` puts it in MODEL_CARD.md;
- :func:`checkpoint_overview_markdown`: the card's first table, "which checkpoint for what" (the best measured
  checkpoint per task, protocol, label fraction and input, from the registry metrics, with its results file);
- :func:`published_anchors_markdown`: the published anchors once, one section per task (not in every block);
- :func:`load_pretrain_log` / :func:`plot_pretrain_log`: a ``zoo pretrain`` step log and its loss curves.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .._plot import gradcam_info, pyplot, save_figure
from .anchors import SOURCES, anchors_for

__all__ = [
    "load_results",
    "results_key",
    "results_to_metrics",
    "results_table_markdown",
    "anchors_table_markdown",
    "robustness_table_markdown",
    "plot_label_fractions",
    "gradcam_info",
    "gradcam_markdown",
    "model_card_results",
    "checkpoint_overview_markdown",
    "published_anchors_markdown",
    "OVERVIEW_BLOCK",
    "ANCHORS_BLOCK",
    "card_markers",
    "update_card",
    "card_block",
    "load_pretrain_log",
    "plot_pretrain_log",
]

ResultsLike = dict[str, Any] | str | os.PathLike[str]


def load_results(items: ResultsLike | Iterable[ResultsLike]) -> list[dict[str, Any]]:
    """Results dicts from paths (JSON files written by ``zoo eval``) or dicts, in the given order."""
    if isinstance(items, (dict, str, os.PathLike)):
        items = [items]
    out = []
    for item in items:
        data = item if isinstance(item, dict) else json.loads(Path(item).read_text())
        if data.get("format") != "zoo-eval/1" or "runs" not in data:
            raise ValueError(f"{item if not isinstance(item, dict) else 'dict'} is not a zoo eval results file "
                             "(format zoo-eval/1); produce it with `zoo eval`")
        out.append(data)
    return out


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _size(results: dict[str, Any]) -> str:
    return "x".join(str(s) for s in results["input_size"][1:])


def results_key(results: dict[str, Any]) -> str:
    """``task/protocol/percent/input`` (e.g. ``retinamnist/linear/100%/28x28``): one checkpoint may be
    measured at several input sizes."""
    return f"{results['task']}/{results['protocol']}/{_pct(results['label_fraction'])}/{_size(results)}"


def _r(x: float) -> float:
    return round(float(x), 4)


def results_to_metrics(items: ResultsLike | Iterable[ResultsLike]) -> dict[str, dict[str, Any]]:
    """The registry ``metrics`` of one checkpoint from its results files.

    Each entry holds the checkpoint's mean and std per metric, the random-init pair, the seeds, input
    size and the command. Every file must contain the checkpoint arm, all of the same sha256.
    """
    results = load_results(items)
    shas = set()
    metrics: dict[str, dict[str, Any]] = {}
    for res in results:
        if "pretrained" not in res["runs"] or not res.get("checkpoint"):
            raise ValueError(f"{res['command']}: random-init-only results cannot be a checkpoint's metrics; "
                             "evaluate the checkpoint (registered weights or --checkpoint-path)")
        shas.add(res["checkpoint"]["sha256"])
        pre, rnd = res["runs"]["pretrained"], res["runs"]["random_init"]
        entry: dict[str, Any] = {}
        for m in res["metrics"]:
            entry[m] = _r(pre["mean"][m])
            entry[f"{m}_std"] = _r(pre["std"][m])
        entry["random_init"] = {k: _r(rnd[s][m]) for m in res["metrics"]
                                for k, s in ((m, "mean"), (f"{m}_std", "std"))}
        entry.update(seeds=len(res["seeds"]), img_size=res["img_size"], command=res["command"])
        metrics[results_key(res)] = entry
    if len(shas) > 1:
        raise ValueError(f"results of different checkpoints ({sorted(s[:12] for s in shas)}) cannot be one "
                         "registry entry's metrics")
    return metrics


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _input(res: dict[str, Any]) -> str:
    text = _size(res)
    return f"{text} crops" if res.get("kind") == "segmentation" else text


def _order(res: dict[str, Any]) -> tuple[str, str, tuple[int, ...], float]:
    return res["task"], res["protocol"], tuple(res["input_size"][1:]), res["label_fraction"]


def results_table_markdown(items: ResultsLike | Iterable[ResultsLike]) -> str:
    """One row per (results file, metric): checkpoint vs random init (mean ± std over seeds), and the gain."""
    results = load_results(items)
    lines = [
        "| task | protocol | labels | input | seeds | metric | checkpoint | random init | gain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in sorted(results, key=_order):
        rnd = res["runs"]["random_init"]
        pre = res["runs"].get("pretrained")
        for m in res["metrics"]:
            ckpt = _fmt(pre["mean"][m], pre["std"][m]) if pre else "–"
            gain = f"{pre['mean'][m] - rnd['mean'][m]:+.3f}" if pre else "–"
            lines.append(
                f"| {res['task']} | {res['protocol']} | {_pct(res['label_fraction'])} | {_input(res)} | "
                f"{len(res['seeds'])} | {m.upper()} | {ckpt} | {_fmt(rnd['mean'][m], rnd['std'][m])} | {gain} |"
            )
    return "\n".join(lines) + "\n"


def anchors_table_markdown(task: str, metrics: Sequence[str]) -> str:
    """The published anchors on ``task``'s test split for ``metrics`` (a markdown table with sources)."""
    rows = [a for a in anchors_for(task) if any(m in a.values for m in metrics)]
    if not rows:
        return ""
    head = "| method | protocol | input | " + " | ".join(m.upper() for m in metrics) + " | source |"
    lines = [head, "|" + "---|" * (4 + len(metrics))]
    for a in rows:
        vals = " | ".join(f"{a.values[m]:.3f}" if m in a.values else "–" for m in metrics)
        note = f" ({a.note})" if a.note else ""
        lines.append(f"| {a.method} | {a.protocol} | {a.input} | {vals} | {a.source}{note} |")
    used = sorted({a.source for a in rows})
    lines.append("")
    lines += [f"- {s}: {SOURCES[s]}" for s in used]
    return "\n".join(lines) + "\n"


def robustness_table_markdown(items: ResultsLike | Iterable[ResultsLike]) -> str:
    """For each results file with robustness runs: metric per corruption and severity, both arms."""
    out = []
    for res in load_results(items):
        rob = res.get("robustness")
        if not rob:
            continue
        m = res["metrics"][0]
        arms = [a for a in ("pretrained", "random_init") if a in rob]
        title = (f"{res['task']}, {res['protocol']}, {_pct(res['label_fraction'])} labels, {m.upper()} "
                 f"(mean ± std over {len(res['seeds'])} seeds)")
        lines = [f"**{title}**", "", "| corruption | severity | " + " | ".join(a.replace("_", " ") for a in arms) + " |",
                 "|---|---|" + "---|" * len(arms)]
        lines.append("| none | – | " + " | ".join(
            _fmt(rob[a]["clean"][m]["mean"], rob[a]["clean"][m]["std"]) for a in arms) + " |")
        for name in (k for k in rob[arms[0]] if k != "clean"):
            for sev in ("1", "2", "3"):
                cells = " | ".join(_fmt(rob[a][name][sev][m]["mean"], rob[a][name][sev][m]["std"]) for a in arms)
                lines.append(f"| {name.replace('_', ' ')} | {sev} | {cells} |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def plot_label_fractions(items: ResultsLike | Iterable[ResultsLike], path: str | os.PathLike[str],
                         title: str | None = None) -> Path:
    """A PNG of each (task, protocol)'s headline metric vs label fraction, checkpoint vs random init (one pair of
    lines per input size)."""
    plt = pyplot()
    results = load_results(items)
    panels: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for res in sorted(results, key=_order):
        panels.setdefault((res["task"], res["protocol"]), {}).setdefault(_input(res), []).append(res)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, ((task, protocol), by_size) in zip(axes[0], panels.items(), strict=True):
        m = next(iter(by_size.values()))[0]["metrics"][0]
        for i, (size, rs) in enumerate(by_size.items()):
            at = f", {size}" if len(by_size) > 1 else ""
            for arm, marker, line in (("pretrained", "o", "-"), ("random_init", "s", "--")):
                pts = [(100 * r["label_fraction"], r["runs"][arm]) for r in rs if arm in r["runs"]]
                if pts:
                    label = "checkpoint" if arm == "pretrained" else "random init"
                    ax.errorbar([p[0] for p in pts], [p[1]["mean"][m] for p in pts],
                                yerr=[p[1]["std"][m] for p in pts], fmt=marker + line, capsize=3,
                                color=f"C{2 * i + (arm != 'pretrained')}", label=label + at)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training data (%)")
        ax.set_ylabel(m.upper())
        ax.set_title(f"{task} ({protocol})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def load_pretrain_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The steps of a ``zoo pretrain`` log (``log.jsonl``, or gzipped ``.jsonl.gz``), checked to be 1, 2, ... N."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        steps = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a zoo pretrain step log (JSON lines): {e}") from e
    if not steps or [s.get("step") for s in steps] != list(range(1, len(steps) + 1)):
        raise ValueError(f"{path}: steps are not 1..N without gaps (an interrupted log? resume the run with "
                         "zoo pretrain --resume, which rewinds the log to its checkpoint)")
    return steps


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_pretrain_log(log: str | os.PathLike[str] | list[dict[str, Any]], path: str | os.PathLike[str],
                      title: str | None = None, window: int = 20) -> Path:
    """A PNG of a pretraining run: the loss per step (and its moving average over ``window`` steps), the loss
    terms (``loss_*`` / ``mse_*`` entries, moving averages) when the method logs them, and the learning rate."""
    steps = log if isinstance(log, list) else load_pretrain_log(log)
    x = [s["step"] for s in steps]
    terms = sorted({k for s in steps for k in s if k.startswith(("loss_", "mse_"))})
    plt = pyplot()
    fig, axes = plt.subplots(1, 3 if terms else 2, figsize=(13 if terms else 9, 3.4), squeeze=False)
    ax = axes[0][0]
    loss = [s["loss"] for s in steps]
    ax.plot(x, loss, lw=0.5, alpha=0.35, label="per step")
    ax.plot(x, _moving_average(loss, window), lw=1.5, label=f"mean of {window} steps")
    ax.set_title("loss", fontsize=10)
    ax.legend(fontsize=8)
    if terms:
        ax = axes[0][1]
        for k in terms:
            pts = [(s["step"], s[k]) for s in steps if k in s]
            ax.plot([p[0] for p in pts], _moving_average([p[1] for p in pts], window), lw=1.2, label=k)
        ax.set_title(f"loss terms (mean of {window} steps)", fontsize=10)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    ax.plot(x, [s["lr"] for s in steps])
    ax.set_title("learning rate", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def gradcam_markdown(png: str | os.PathLike[str]) -> str:
    """The Grad-CAM subsection of a figure drawn by ``zoo gradcam`` (the command is read from the PNG)."""
    command, _ = gradcam_info(png)
    if not command.startswith("zoo gradcam "):
        raise ValueError(f"{png} was not drawn by `zoo gradcam` (no command in its metadata); draw it again with "
                         "`zoo gradcam NAME --task TASK -o PNG`")
    return "\n".join(["### Grad-CAM", "", "A few test images; Grad-CAM of a linear probe on the checkpoint's frozen "
                      "features and on random init's (columns), drawn by", "", "```", command, "```", "",
                      f"![Grad-CAM]({png})", ""])


def model_card_results(items: ResultsLike | Iterable[ResultsLike], plot_path: str | None = None,
                       gradcam_path: str | None = None) -> str:
    """Markdown for a MODEL_CARD.md section: results table, commands, plot, Grad-CAM, robustness.

    The published anchors of its tasks are in the card once (:func:`published_anchors_markdown`), not here.
    """
    results = load_results(items)
    parts = ["### Results (mean ± std over seeds; each row is a pair with random init, same protocol and budget)",
             "", results_table_markdown(results)]
    commands = list(dict.fromkeys(r["command"] for r in sorted(results, key=_order)))  # in the table's order
    parts += [f"Commands{_old_names_note(commands)}:", "", "```", *commands, "```", ""]
    tasks = sorted({r["task"] for r in results if anchors_for(r["task"])})
    if tasks:
        parts += ["Published anchors on the same test split" + ("s" if len(tasks) > 1 else "") + ": "
                  + ", ".join(f"[{t}](#{_anchor_id(t)})" for t in tasks) + " (one table per task, above).", ""]
    if plot_path:
        parts += [f"![metric vs label fraction]({plot_path})", ""]
    if gradcam_path:
        parts += [gradcam_markdown(gradcam_path)]
    rob = robustness_table_markdown(results)
    if rob:
        parts += ["### Robustness", "", rob]
    return "\n".join(parts)


OVERVIEW_BLOCK = "overview"  # card_markers(OVERVIEW_BLOCK): the "which checkpoint for what" table
ANCHORS_BLOCK = "anchors"  # card_markers(ANCHORS_BLOCK): the published anchors, one section per task


def _anchor_title(task: str) -> str:
    return f"Published anchors on the {task} test split"


def _anchor_id(task: str) -> str:
    """The GitHub heading id of :func:`_anchor_title` (lower case, spaces -> '-', '_' kept)."""
    return _anchor_title(task).lower().replace(" ", "-")


def published_anchors_markdown(items: ResultsLike | Iterable[ResultsLike]) -> str:
    """One section per task of ``items``: the published anchors for the task's metrics (with sources)."""
    results = load_results(items)
    parts = []
    for task in sorted({r["task"] for r in results}):
        metrics = next(r["metrics"] for r in results if r["task"] == task)
        table = anchors_table_markdown(task, metrics)
        if table:
            parts += [f"### {_anchor_title(task)}", "", table]
    return "\n".join(parts)


def _old_names_note(commands: Iterable[str]) -> str:
    """`` (as run: OLD is zoo 0.1's name of NEW)`` when recorded commands use names that are aliases now."""
    from ..meta.registry import list_aliases, resolve_name

    aliases = set(list_aliases())
    old = sorted({w for c in commands for w in c.split() if w.split(".")[0] in aliases})
    if not old:
        return ""
    return " (as they were run: " + ", ".join(f"`{o}` is zoo 0.1's name of `{resolve_name(o, warn=False)}`"
                                               for o in old) + ")"


def _headline(res: dict[str, Any]) -> str:
    return res["metrics"][0]


def checkpoint_overview_markdown(names: Iterable[str], results_dir: str | os.PathLike[str] = "results") -> str:
    """"Which checkpoint for what": for each task, protocol, label fraction (1% and 100%) and input size, the
    checkpoint of ``names`` with the best measured headline metric (registry ``metrics``), with the results
    file it comes from and the default tag of its network.

    Each metrics entry must have its results file in ``results_dir`` (``NAME__*.json``, the same
    ``task/protocol/labels/input`` key and numbers), so that every number has a file behind it.
    """
    from ..meta.registry import get_pretrained_cfg, get_tags

    best: dict[tuple[str, str, float, tuple[int, ...]], tuple[float, str, dict[str, Any], dict[str, Any], str]] = {}
    for name in names:
        cfg = get_pretrained_cfg(name)
        files = {results_key(res): (str(path), res) for path in sorted(Path(results_dir).glob(f"{name}__*.json"))
                 for res in load_results(path)}
        for key, entry in cfg.metrics.items():
            if key not in files:
                raise ValueError(f"{name}: no results file in {results_dir} for its metrics {key!r}; measure it "
                                 f"with `bash scripts/evaluate_reference.sh {name}`")
            path, res = files[key]
            m = _headline(res)
            if _r(res["runs"]["pretrained"]["mean"][m]) != entry[m]:
                raise ValueError(f"{name}: the registry metrics {key!r} differ from {path}: "
                                 "`zoo report --metrics` writes them")
            if res["label_fraction"] not in (0.01, 1.0):
                continue
            group = (res["task"], res["protocol"], res["label_fraction"], tuple(res["input_size"][1:]))
            score = (entry[m], name)
            if group not in best or score > best[group][:2]:
                best[group] = (entry[m], name, entry, res, path)
    lines = ["| task | modality | protocol | labels | input | best checkpoint | result (mean ± std over seeds) | "
             "random init | results file | default tag of the network |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (task, protocol, fraction, _), (_, name, entry, res, path) in sorted(
            best.items(), key=lambda kv: (get_pretrained_cfg(kv[1][1]).modality, kv[0])):
        cfg = get_pretrained_cfg(name)
        m = _headline(res)
        default = get_tags(cfg.architecture)[1]
        default_text = f"{cfg.architecture}.{default}" if default else "none"
        if default == cfg.tag:
            default_text += " (this one)"
        lines.append(
            f"| {task} | {cfg.modality} | {protocol} | {_pct(fraction)} | {_input(res)} | {name} | "
            f"{m.upper()} {_fmt(entry[m], entry[f'{m}_std'])} ({entry['seeds']} seeds) | "
            f"{_fmt(entry['random_init'][m], entry['random_init'][f'{m}_std'])} | [{Path(path).name}]({path}) | "
            f"{default_text} |")
    return "\n".join(lines) + "\n"


def card_markers(name: str) -> tuple[str, str]:
    """The comment lines around the generated block of checkpoint ``name`` in MODEL_CARD.md."""
    return f"<!-- zoo report {name}: begin -->", f"<!-- zoo report {name}: end -->"


def _block_span(text: str, name: str, card: str | os.PathLike[str]) -> tuple[int, int]:
    """Where the generated block of ``name`` lies in ``text``: after its begin line, up to its end line."""
    begin, end = card_markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{card} has no block for {name}: put the lines {begin!r} and {end!r} in its '## {name}' "
                         "section where the results go")
    return i + len(begin), j


def update_card(card: str | os.PathLike[str], name: str, block: str) -> Path:
    """Replace the generated block of ``name`` in the model card ``card`` (between :func:`card_markers`).

    The card is rewritten atomically; it is left untouched when the markers are missing.
    """
    path = Path(card)
    text = path.read_text()
    i, j = _block_span(text, name, path)
    text = text[:i] + "\n\n" + block.strip("\n") + "\n\n" + text[j:]
    return atomic_write_text(path, text, fsync=False)


def card_block(card: str | os.PathLike[str], name: str) -> str:
    """The generated block of ``name`` currently in the model card (without the markers)."""
    text = Path(card).read_text()
    i, j = _block_span(text, name, card)
    return text[i:j].strip("\n")
