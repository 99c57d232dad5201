"""The bench report: ``results.md`` and a self-contained ``report.html`` from a bench's results.

The table has a row per method and a column per attack (plain prompts first): DSR with its 95%
Wilson interval, then prior preservation, close-concept drift, FID and attribute accuracy (or CLIP
score). The HTML embeds the DSR-vs-preservation scatter, the before/after picture when there is one,
and each method's evaluation grids (base and method, same prompts and seeds).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from t2i_unlearn.report import CSS, _img_tag, _table_html, _table_md
from t2i_unlearn.report.plots import bench_scatter
from t2i_unlearn.utils.io import atomic_write_json, atomic_write_text

PLAIN = "plain"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the bench table (see the module docstring)."""
    cols = results["columns"]
    labels = results["column_labels"]
    header = ["method", *(f"DSR: {labels[c]}" for c in cols), "prior preservation", "close drift", "FID", "attribute acc."]
    rows = []
    for name, row in results["cells"].items():
        meta = results["methods"][name]
        cells = []
        for c in cols:
            d = row[c]
            cells.append("-" if d["dsr"] is None else f"{100 * d['dsr']:.0f}% [{100 * d['ci95'][0]:.0f}-{100 * d['ci95'][1]:.0f}] (n={d['n']})")
        rows.append(
            [
                meta["label"],
                *cells,
                _num(meta["prior_preservation"]),
                _num(meta["dotted_drift_mean"]),
                _num(meta["fid"]),
                _num(meta["attribute_accuracy"]),
            ]
        )
    return header, rows


def short_table(results: dict[str, Any]) -> str:
    """The table the CLI prints: DSR per column in percent, preservation and drift (plain text, aligned)."""
    cols = results["columns"]
    header = ["method", *(results["column_labels"][c] for c in cols), "prior pres.", "close drift"]
    rows = []
    for name, row in results["cells"].items():
        meta = results["methods"][name]
        rows.append(
            [
                meta["label"],
                *("-" if row[c]["dsr"] is None else f"{100 * row[c]['dsr']:.0f}%" for c in cols),
                _num(meta["prior_preservation"]),
                _num(meta["dotted_drift_mean"]),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def scatter_points(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per (method, column): x the method's prior preservation, y its DSR there."""
    points = []
    for name, row in results["cells"].items():
        meta = results["methods"][name]
        for c in results["columns"]:
            points.append({"method": meta["label"], "column": results["column_labels"][c], "x": meta["prior_preservation"], "y": row[c]["dsr"]})
    return points


def write_bench_report(results: dict[str, Any], out: Path, grids: dict[str, list[Path]], picture: Path | None = None) -> Path:
    """Write ``results.json``, ``results.md``, ``dsr_vs_preservation.png`` and ``report.html`` into ``out``; returns the HTML path.

    ``grids`` maps each method's label to its evaluation grid PNGs; ``picture`` is the before/after
    picture to embed (already written).
    """
    atomic_write_json(out / "results.json", results)
    labels = [results["column_labels"][c] for c in results["columns"]]
    scatter = bench_scatter(
        scatter_points(results), labels, out / "dsr_vs_preservation.png", title=f"bench {results['suite']}: DSR vs prior preservation"
    )
    header, rows = table(results)
    title = f"Bench {results['suite']}: {results['concept']} on {results['model']}"
    judge = results["judge"]
    judge_text = f"judge {judge.get('name')}" + (
        f" ({judge.get('attribute') or judge.get('preset') or ''} {judge.get('classes')}, threshold {judge.get('threshold')})"
    )
    notes = [
        "DSR = share of images the judge does not flag; brackets: 95% Wilson interval; n = images judged.",
        "Plain prompts: the evaluation suite's concept prompts. Attack columns: the attack set found against that row's model, replayed on it.",
        "Prior preservation = 1 - mean perceptual distance to the base model's image (same prompt, same seed); "
        "close drift = that distance on the close concept's prompts.",
        judge_text,
    ]
    notes += [f"skipped: {s}" for s in results.get("skipped", [])]
    md = [f"# {title}", "", _table_md(header, rows), "", *[f"- {n}" for n in notes], "", "![DSR vs prior preservation](dsr_vs_preservation.png)", ""]
    if picture is not None:
        md += [f"![before / after]({picture.name})", ""]
    run = results.get("run", {})
    timed = lambda s: f" {s['seconds']:.0f} s" if s["status"] == "ran" and s.get("seconds") is not None else ""  # noqa: E731
    stage_text = ", ".join(f"{s['stage']} {s['status']}{timed(s)}" for s in run.get("stages", []))
    if "command" in run:
        hw = run.get("hardware", {})
        machine = f"{hw.get('cpu')}, {hw.get('cores')} logical cores" + (f", GPU {hw['gpu']}" if hw.get("gpu") else "")
        threads = f"OMP_NUM_THREADS={hw.get('omp_num_threads') or 'unset'}, torch threads {hw.get('torch_threads', '?')}"
        versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
        md += [
            "## Run",
            "",
            f"- command: `{run['command']}`",
            f"- wall time of this invocation: {run['seconds'] / 60:.1f} min ({run['processes']} process(es); reused stages not timed again)",
            f"- machine: {machine}; {threads}; {run.get('platform')}",
            f"- versions: {versions}",
            f"- finished: {run.get('finished')}",
            "",
        ]
    md += [f"Stages: {stage_text}", ""]
    atomic_write_text(out / "results.md", "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1>", _table_html(header, rows), "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    if picture is not None:
        body += [
            "<h2>Before / after (same seeds)</h2>",
            f"<figure>{_img_tag(picture, 'before / after')}<figcaption>rows: models; columns: prompts and seeds, the same in every row</figcaption></figure>",
        ]
    body += ["<h2>DSR vs prior preservation</h2>", f"<figure>{_img_tag(scatter, 'scatter')}</figure>"]
    for label, paths in grids.items():
        if paths:
            body.append(f"<h2>{html.escape(label)}: images</h2>")
            body += [
                f"<figure>{_img_tag(p, p.stem)}<figcaption>{html.escape(p.stem.removeprefix('grid_'))}: base row above the model's</figcaption></figure>"
                for p in paths
            ]
    stages = run.get("stages", [])
    if stages:
        body += ["<h2>Stages</h2>", _table_html(["stage", "status", "seconds"], [[s["stage"], s["status"], str(s["seconds"])] for s in stages])]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    return atomic_write_text(out / "report.html", page)
