"""Verdicts of the metric-validity bench, and their rendering (pure numpy / matplotlib, no torch).

The bench (:mod:`ablate.validity.bench`) writes ``validity-<dataset>.json``: each metric's values per
corruption, strength and seed. Here each (metric, corruption) is judged:

- **expected**: which corruptions must make a metric worse, from its role: a fidelity metric where lower is
  better (FD, KID) every ``quality`` corruption (noise, blur, blur+noise, pixelate) and every ``coverage``
  one (dropped classes, imbalance, memorised copies: a set of 10 repeated training images is not the data's
  distribution, even though each image is real); a fidelity metric where higher is better (precision: sample
  quality only, by design) the quality corruptions; a diversity metric (recall) the coverage ones; an
  alignment metric the shuffled labels. Other pairs are shown, not judged.
- **pass**: the seed-mean gets worse at every step of strength; **pass (within noise)**: a step improves but
  by less than 2 standard errors of the paired (same seed) difference, and the strongest level is worse than
  the clean one by more than 2 standard errors; **FAIL**: a step improves by more than 2 standard errors
  (the failing case is named), or the strongest level is not worse than the clean one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EXPECTED = {("fidelity", False): ("quality", "coverage"), ("fidelity", True): ("quality",),
            ("diversity", True): ("coverage",), ("alignment", True): ("labels",), ("alignment", False): ("labels",)}


@dataclass(frozen=True)
class Verdict:
    metric: str
    corruption: str
    status: str          # "pass", "pass (within noise)", "FAIL", "not judged"
    case: str = ""       # the failing (or noisy) case, in words

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


def file_name(dataset: str, ext: str) -> str:
    return f"validity-{dataset}.{ext}"


def load(dataset: str, folders: list[Path]) -> tuple[dict[str, Any], Path] | None:
    """The first ``validity-<dataset>.json`` found in ``folders``, and its path."""
    for folder in folders:
        path = Path(folder) / file_name(dataset, "json")
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")), path
    return None


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the scorers of ``old`` it did not run kept (one result per scorer and dataset)."""
    if old is None or old.get("dataset") != new["dataset"]:
        return new
    return {**new, "scorers": {**old.get("scorers", {}), **new["scorers"]},
            "skipped": {k: v for k, v in {**old.get("skipped", {}), **new["skipped"]}.items()
                        if k not in new["scorers"]}}


def metrics_of(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """metric name -> (scorer, its entry) over the document's scorers."""
    return {m: (s, e) for s, entry in doc.get("scorers", {}).items() for m, e in entry["metrics"].items()}


def judge(metric: str, entry: dict[str, Any], corruption: dict[str, Any]) -> Verdict:
    name, strengths = corruption["name"], corruption["strengths"]
    if corruption["kind"] not in EXPECTED.get((entry["role"], entry["higher_is_better"]), ()):
        return Verdict(metric, name, "not judged")
    values = np.array(entry["values"][name], dtype=float)             # (strengths, seeds)
    worse = values if not entry["higher_is_better"] else -values      # larger = worse
    if not np.isfinite(worse).all():
        return Verdict(metric, name, "FAIL", "non-finite values")
    noisy = ""
    for i in range(len(strengths) - 1):
        d = worse[i + 1] - worse[i]
        if d.mean() < 0:
            case = (f"{strengths[i]:g} -> {strengths[i + 1]:g} {corruption['unit']}: "
                    f"{values[i].mean():.4g} -> {values[i + 1].mean():.4g}")
            if d.mean() < -2 * _se(d):
                return Verdict(metric, name, "FAIL", f"better at {case}")
            noisy = noisy or f"better within noise at {case}"
    end = worse[-1] - worse[0]
    if not end.mean() > 2 * _se(end):
        return Verdict(metric, name, "FAIL", f"no response: {values[0].mean():.4g} clean, "
                                             f"{values[-1].mean():.4g} at {strengths[-1]:g} {corruption['unit']}")
    return Verdict(metric, name, "pass (within noise)" if noisy else "pass", noisy)


def _se(d: np.ndarray) -> float:
    return float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def verdicts(doc: dict[str, Any], metric: str) -> list[Verdict]:
    _, entry = metrics_of(doc)[metric]
    return [judge(metric, entry, c) for c in doc["corruptions"]]


def summary(doc: dict[str, Any], metric: str, path: Path | str | None = None) -> str:
    """One line for a leaderboard header: the metric's verdicts and where they come from."""
    if metric not in metrics_of(doc):
        return f"{metric}: not in the validity bench ({path or file_name(doc['dataset'], 'json')})."
    judged = [v for v in verdicts(doc, metric) if v.status != "not judged"]
    failed = [v for v in judged if v.failed]
    where = f"{Path(path).with_suffix('.md').name if path else file_name(doc['dataset'], 'md')}: " \
            f"{doc['num_samples']} held-out images x {len(doc['seeds'])} seeds"
    if failed:
        cases = "; ".join(f"{v.corruption} ({v.case})" for v in failed)
        return f"{metric}: FAILS the validity bench in {len(failed)} of {len(judged)} corruptions: {cases} [{where}]."
    what = f"all {len(judged)} corruptions" if len(judged) > 1 else "the one corruption"
    return f"{metric}: passes the validity bench, {what} it must respond to [{where}]."


def mark(doc: dict[str, Any] | None, metric: str) -> str:
    """A column-name suffix for tables: `` (FAILS validity: blur+noise, noise)``, or ``""``."""
    if doc is None or metric not in metrics_of(doc):
        return "" if doc is None else " (validity not measured)"
    failed = [v.corruption for v in verdicts(doc, metric) if v.failed]
    return f" (FAILS validity: {', '.join(failed)})" if failed else ""


def render_markdown(doc: dict[str, Any], figure: str | None) -> str:
    """The validity page: protocol, one verdict table, then per corruption the seed means per strength."""
    metrics = metrics_of(doc)
    corruptions = doc["corruptions"]
    parts = [f"# Metric validity: {doc['dataset']}",
             f"Held-out real images ({doc['pool']}, the scorers' reference being the test split), {doc['num_samples']} "
             f"per set, seeds {', '.join(map(str, doc['seeds']))}; each corruption at graded strengths "
             "(ablate/validity/corruptions.py); verdict rules in ablate/report/validity.py: a metric must get worse "
             "at every step of every corruption its role must respond to (pass), a step better by less than 2 "
             "standard errors is 'pass (within noise)', better by more than 2, or no response at the strongest "
             "level, is FAIL. Made by `python -m ablate metrics check`."]
    parts.append("\n".join(f"- {s}" for s in (summary(doc, m) for m in metrics)))
    header = "| metric | " + " | ".join(c["name"] for c in corruptions) + " |"
    rows = [header, "|:---|" + "---|" * len(corruptions)]
    for m in metrics:
        cells = [v.status + (f": {v.case}" if v.case else "") if v.status != "not judged" else "-"
                 for v in verdicts(doc, m)]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    parts += ["## Verdicts", "\n".join(rows)]
    for c in corruptions:
        head = "| metric | " + " | ".join(f"{s:g}" for s in c["strengths"]) + " |"
        lines = [f"### {c['name']} ({c['unit']})", "Seed mean ± standard error.", head,
                 "|:---|" + "---:|" * len(c["strengths"])]
        for m, (_, e) in metrics.items():
            v = np.array(e["values"][c["name"]], float)
            lines.append(f"| {m} | " + " | ".join(f"{row.mean():.4g} ± {_se(row):.2g}" for row in v) + " |")
        parts.append("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))
    if figure:
        parts.append(f"![metric against corruption strength]({figure})")
    skipped = doc.get("skipped") or {}
    if skipped:
        parts += ["## Scorers not benched", "\n".join(f"- {k}: {v}" for k, v in skipped.items())]
    parts.append("## Provenance\n\n" + "\n".join(
        f"- {s}: " + ", ".join(f"{k}={v}" for k, v in e.get("provenance", {}).items())
        + f"; scored in {e.get('seconds', 0):.0f} s on {e.get('device', '?')}, commit {e.get('git_commit')}"
        for s, e in doc["scorers"].items()))
    return "\n\n".join(parts) + "\n"


def plot(doc: dict[str, Any]) -> bytes:
    """One panel per metric: value against strength level for every corruption, seed means ± 2 SE, seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ablate.report.plots import _png

    metrics = metrics_of(doc)
    cols = 3
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    for ax, (m, (_, e)) in zip(axes.flat, metrics.items()):
        for c, v in zip(doc["corruptions"], verdicts(doc, m)):
            values = np.array(e["values"][c["name"]], float)
            x = np.arange(len(c["strengths"]))
            se = np.array([_se(r) for r in values])
            style = "-" if v.status != "not judged" else ":"
            label = c["name"] + (" FAIL" if v.failed else "")
            line = ax.errorbar(x, values.mean(1), yerr=2 * se, linestyle=style, marker="o" if v.failed else ".",
                               capsize=2, label=label, linewidth=2.2 if v.failed else 1.2)
            ax.plot(np.repeat(x, values.shape[1]), values.ravel(), ".", ms=2, color=line[0].get_color(), alpha=0.5)
        better = "higher" if e["higher_is_better"] else "lower"
        ax.set_title(f"{m} ({e['role']}, {better} is better)", fontsize=9)
        ax.set_xlabel("strength level (0 = clean; see the tables)", fontsize=8)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"Metric validity on {doc['dataset']}: {doc['num_samples']} images, {len(doc['seeds'])} seeds "
                 "(dotted: not judged)", fontsize=10)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def for_frame(frame: Any, folders: tuple[Path, ...]) -> dict[str, tuple[dict[str, Any], Path] | None]:
    """The validity result of each dataset of a results frame, from the first of ``folders`` that has one."""
    return {d: load(d, list(folders)) for d in sorted(map(str, frame["dataset"].unique()))}


def header_lines(found: dict[str, tuple[dict[str, Any], Path] | None], metrics: list[str]) -> list[str]:
    """One line per (metric, dataset): its verdicts, or that the bench has not judged it."""
    lines = []
    for dataset, hit in found.items():
        for metric in metrics:
            if hit is None:
                lines.append(f"Validity of {metric} on {dataset}: not measured (no {file_name(dataset, 'json')}; "
                             f"`python -m ablate metrics check --dataset {dataset}` makes it).")
            else:
                lines.append(f"Validity on {dataset}: {summary(hit[0], metric, hit[1])}")
    return lines


def marks(found: dict[str, tuple[dict[str, Any], Path] | None], metrics: list[str]) -> dict[str, str]:
    """Per metric, the table mark of :func:`mark` (from the first dataset with a result)."""
    docs = [hit[0] for hit in found.values() if hit is not None]
    return {m: mark(docs[0] if docs else None, m) for m in metrics}


def off_manifold_line(frame: Any, threshold: float = 0.5) -> str | None:
    """A warning when in at least ``threshold`` of the records no sample lies on the real images' k-NN manifold
    (a scorer's ``precision_*`` and ``recall_*`` both 0). There the distances on those features order kinds of
    failure, not quality, and the validity bench, which grades corruptions of real images, says nothing: on the CPU
    smoke grid (2026-12-07, every record off the manifold) the visibly broken eps variants ranked 2nd and 4th."""
    for precision in (c for c in frame.columns if str(c).startswith("precision_")):
        recall = "recall_" + precision[len("precision_"):]
        if recall not in frame.columns:
            continue
        both = frame[[precision, recall]].dropna()
        off = (both[precision] == 0) & (both[recall] == 0)
        if len(both) and off.mean() >= threshold:
            return (f"Metric range WARNING: in {int(off.sum())} of {len(both)} records no sample lies on the real "
                    f"images' manifold ({precision} and {recall} both 0): the samples are far from the data, where "
                    "distances on these features (FD, KID, class-conditional KID) order kinds of failure, not "
                    "quality, and the validity bench (graded corruptions of real images) does not reach. Judge "
                    "these ranks by the sample sheets.")
    return None
