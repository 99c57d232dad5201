"""Reports of evaluation runs: ``report.html`` (self-contained), ``report.md`` and PNG figures.

One run (:func:`write_report`): summary table (base vs evaluated model), a table per prompt set,
image grids with base and evaluated images side by side (same prompts, same seeds; images the judge
flags get a red frame), the DSR-vs-prior-preservation scatter, the judge and every setting.
Several runs (:func:`compare_runs`): one table and one scatter.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError
from t2i_unlearn.report.plots import dsr_vs_preservation, points_from_results
from t2i_unlearn.utils.io import atomic_save_image, atomic_write_text, ensure_writable_dir

GRID_IMAGES = 8
THUMB = 96

SUMMARY_ROWS = [
    ("dsr", "DSR (target prompts)", "pct"),
    ("prior_preservation", "prior preservation (1 - distance)", "num"),
    ("close_drift_mean", "close-concept drift, mean", "num"),
    ("close_drift_std", "close-concept drift, std", "num"),
    ("fid", "FID", "num"),
    ("clip_score", "CLIP score / attribute accuracy", "num"),
]


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and np.isnan(value):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _thumbs(images: np.ndarray, flagged: list[bool] | None, size: int = THUMB) -> np.ndarray:
    from PIL import Image

    out = []
    for i, im in enumerate(images):
        pil = Image.fromarray(im)
        pil = pil.resize((size, size), Image.NEAREST if im.shape[0] < size else Image.LANCZOS)
        arr = np.array(pil)
        if flagged is not None and flagged[i]:
            arr[:3], arr[-3:], arr[:, :3], arr[:, -3:] = (220, 30, 30), (220, 30, 30), (220, 30, 30), (220, 30, 30)
        out.append(arr)
    return np.stack(out)


def write_grids(results: dict[str, Any], images: dict[str, dict[str, np.ndarray]], out: Path) -> dict[str, Path]:
    """One PNG per prompt set: a row per model variant over the first images (same seeds in each column)."""
    from t2i_unlearn.toy.show import labelled_rows

    paths = {}
    for name, entry in results["prompt_sets"].items():
        rows = []
        for v in results["variants"]:
            if name not in images.get(v, {}):
                continue
            k = min(GRID_IMAGES, len(images[v][name]))
            flags = [rec.get("flagged", {}).get(v, False) for rec in entry["images"][:k]] if "dsr" in entry["metrics"] else None
            rows.append((v, _thumbs(images[v][name][:k], flags)))
        if rows:
            paths[name] = atomic_save_image(out / f"grid_{_slug(name)}.png", labelled_rows(rows, scale=1, label_width=90))
    return paths


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    variants = results["variants"]
    for key, title, kind in SUMMARY_ROWS:
        values = [results["summary"][v].get(key) for v in variants]
        if any(x is not None for x in values):
            rows.append([title, *[_fmt(x, kind) for x in values]])
    attacks = sorted({a for v in variants for a in (results["summary"][v].get("dsr_attacks") or {})})
    for a in attacks:
        rows.append([f"DSR under {a.removeprefix('attack:')}", *[_fmt((results["summary"][v].get("dsr_attacks") or {}).get(a), "pct") for v in variants]])
    return rows


def _set_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, entry in results["prompt_sets"].items():
        for v, r in entry["results"].items():
            cells = [name, v, str(entry["n_images"])]
            d = r.get("dsr")
            cells.append(f"{_fmt(d['dsr'], 'pct')} [{100 * d['ci95'][0]:.0f}-{100 * d['ci95'][1]:.0f}%] ({d['flagged']} flagged)" if d else "-")
            pp = r.get("prior_preservation")
            cells.append(f"{pp['prior_preservation']:.4f}" if pp else "-")
            dr = r.get("close_drift")
            cells.append(f"{dr['mean']:.4f} ± {dr['std']:.4f}" if dr else "-")
            cells.append(_fmt(r["fid"]["value"]) if "fid" in r else "skipped (see notes)" if "fid_skipped" in r else "-")
            cells.append(_fmt(r["clip_score"]["mean"]) if "clip_score" in r else "-")
            rows.append(cells)
    return rows


SET_HEADER = ["prompt set", "model", "images", "DSR [95% CI]", "prior preservation", "drift mean ± std", "FID", "CLIP / attr. acc."]


def _size_text(sampling: dict[str, Any], drawn: list[int] | None) -> str:
    """``size 512×512`` as asked by the suite, or as drawn when the suite leaves it to the model."""
    if sampling.get("height") and sampling.get("width"):
        return f"size {sampling['height']}×{sampling['width']}"
    if drawn:
        return f"size {drawn[0]}×{drawn[1]} (the model's default)"
    return "size: the model's default"


def _notes(results: dict[str, Any]) -> list[str]:
    """Metrics skipped for a set and variant, with the reason (e.g. FID with too few images)."""
    notes = []
    for name, entry in results["prompt_sets"].items():
        for v, r in entry["results"].items():
            for key in ("fid_skipped", "skipped"):
                if r.get(key):
                    notes.append(f"{name}, {v}: {r[key]}")
    return notes


def _settings_rows(results: dict[str, Any]) -> list[list[str]]:
    s = results["settings"]
    suite = s["suite"]
    samp = suite["sampling"]
    rows = [
        ["model", f"{s['model']} (sha256 {results['model_fingerprint']['sha256'][:16]}…)"],
        ["LoRA", ", ".join(f"{a['path']} ×{a['weight']} (sha256 {a['sha256'][:12]}…)" for a in s["lora"]) or "none"],
        ["suite", f"{suite['name']}: {suite['description']}"],
        ["sampler", f"{samp['steps']} steps, guidance {samp['guidance']} (unless the file sets it), {_size_text(samp, results['run'].get('image_size'))}"],
        ["seeds", f"suite seed {suite['seed']}; {s['seed_rule']}"],
    ]
    for k, v in results["metric_backends"].items():
        rows.append([f"{k} backend", ", ".join(f"{a}={b}" for a, b in v.items())])
    versions = results["manifest"]["versions"]
    rows.append(["versions", ", ".join(f"{k} {v}" for k, v in versions.items())])
    rows.append(["run", f"{results['run']['processes']} process(es), generated {results['run']['generated_images']}, {results['run']['seconds']} s"])
    return rows


def _judge_rows(judge: dict[str, Any]) -> list[list[str]]:
    return [[k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)] for k, v in judge.items()]


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.muted{color:#666;font-size:.9em}img{max-width:100%;image-rendering:pixelated}figure{margin:10px 0}
figcaption{font-size:.85em;color:#555}"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_report(results: dict[str, Any], images: dict[str, dict[str, np.ndarray]], out: str | Path) -> Path:
    """Write ``report.html``, ``report.md``, ``grid_<set>.png`` and ``dsr_vs_preservation.png``; returns the HTML path."""
    out = ensure_writable_dir(out)
    grids = write_grids(results, images, out)
    scatter = dsr_vs_preservation(points_from_results(results), out / "dsr_vs_preservation.png", title=f"{results['suite']}: DSR vs prior preservation")
    variants = results["variants"]
    title = f"Evaluation of {results['label']} on {results['suite']}"
    summary, sets, settings, judge = _summary_rows(results), _set_rows(results), _settings_rows(results), _judge_rows(results["judge"])
    note = "Grids: one column per prompt and seed, the same in every row; a red frame marks an image the judge flags."

    md = [f"# {title}", "", "## Summary", "", _table_md(["metric", *variants], summary), "", "![DSR vs prior preservation](dsr_vs_preservation.png)", ""]
    notes = _notes(results)
    md += ["## Prompt sets", "", _table_md(SET_HEADER, sets), ""]
    md += [*[f"- {n}" for n in notes], *([""] if notes else [])]
    md += ["## Images", "", note, ""]
    for name, path in grids.items():
        md += [f"### {name}", "", f"![{name}]({path.name})", ""]
    md += ["## Judge", "", _table_md(["field", "value"], judge), "", "## Settings", "", _table_md(["setting", "value"], settings), ""]
    md += ["Every number, per-image verdict, distance and cache key: `results.json`.", ""]
    atomic_write_text(out / "report.md", "\n".join(md))

    body = [f"<h1>{html.escape(title)}</h1><p class='muted'>{html.escape(results['manifest']['created'])}</p>"]
    body += ["<h2>Summary</h2>", _table_html(["metric", *variants], summary), f"<figure>{_img_tag(scatter, 'DSR vs prior preservation')}</figure>"]
    body += ["<h2>Prompt sets</h2>", _table_html(SET_HEADER, sets)]
    body += [f"<ul class='muted'>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>"] if notes else []
    body += ["<h2>Images</h2>", f"<p class='muted'>{html.escape(note)}</p>"]
    for name, path in grids.items():
        body.append(f"<figure>{_img_tag(path, name)}<figcaption>{html.escape(name)}</figcaption></figure>")
    body += ["<h2>Judge</h2>", _table_html(["field", "value"], judge), "<h2>Settings</h2>", _table_html(["setting", "value"], settings)]
    body.append("<p class='muted'>Every number, per-image verdict, distance and cache key: results.json.</p>")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    return atomic_write_text(out / "report.html", page)


def load_results(run: str | Path) -> dict[str, Any]:
    """``results.json`` of a run folder (or the file itself); :class:`UserError` if it is missing or not ours."""
    path = Path(run)
    if path.is_file() and path.suffix != ".json":
        raise UserError(f"{run} is a file, not a run folder (a folder written by 'eval', or its results.json)")
    path = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{run} has no readable results.json ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("format") != "t2i_unlearn.eval_results":
        raise UserError(f"{path} is not an evaluation results file")
    missing = _missing_result_key(data)
    if missing:
        raise UserError(f"{path} is not a complete evaluation results file: {missing!r} is missing or malformed")
    return data


def _missing_result_key(data: dict[str, Any]) -> str | None:
    """The first key a report or comparison reads that ``data`` lacks (``judge.name`` for a nested one), or None."""
    kinds = {"suite": str, "variants": list, "summary": dict, "judge": dict, "model_fingerprint": dict, "settings": dict}
    for key, kind in kinds.items():
        if not isinstance(data.get(key), kind):
            return key
    for outer, inner in (("judge", "name"), ("model_fingerprint", "sha256"), ("settings", "model")):
        if inner not in data[outer]:
            return f"{outer}.{inner}"
    for variant in [*data["variants"], *data["summary"]]:
        if not isinstance(variant, str) or not isinstance(data["summary"].get(variant), dict):
            return f"summary.{variant}"
    return None


def compare_runs(runs: list[str | Path], out: str | Path, labels: list[str] | None = None, overwrite: bool = False) -> Path:
    """One table and one DSR-vs-preservation plot over several runs; writes ``compare.html``, ``compare.md``, ``compare.png``.

    ``out`` follows the output rule of :func:`~t2i_unlearn.utils.io.claim_output` (a comparison of the
    same runs is redone and replaced; anything else non-empty is refused unless ``overwrite``).
    """
    from t2i_unlearn.utils.io import atomic_write_json, claim_output, make_manifest, manifest_recogniser

    if len(runs) < 1:
        raise UserError("report compare needs at least one run folder")
    if labels and len(labels) != len(runs):
        raise UserError(f"{len(runs)} runs but {len(labels)} labels")
    all_results = [load_results(r) for r in runs]
    request = {"runs": [str(Path(r).expanduser().resolve()) for r in runs], "labels": labels}
    claim = claim_output(out, "a comparison", manifest_recogniser("comparison", request, "a comparison", same="partial"), overwrite)
    with claim.staged() as tmp:
        atomic_write_json(tmp / "manifest.json", make_manifest("t2i-unlearn report compare", request, artifact="comparison", request=request))
        _write_comparison(runs, all_results, labels, tmp)
    return claim.path / "compare.html"


def _write_comparison(runs: list[str | Path], all_results: list[dict[str, Any]], labels: list[str] | None, out: Path) -> Path:
    labels = labels or [r.get("label") or Path(str(p)).name for r, p in zip(all_results, runs, strict=True)]
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # two runs of one adapter name stay apart
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} ({seen[lab]})"
    suites = sorted({r["suite"] for r in all_results})
    attacks = sorted({a for r in all_results for s in r["summary"].values() for a in (s.get("dsr_attacks") or {})})
    header = ["run", "suite", "judge", *[t for _, t, _ in SUMMARY_ROWS], *[f"DSR under {a.removeprefix('attack:')}" for a in attacks]]
    rows: list[list[str]] = []
    points: list[dict[str, Any]] = []
    base_done: set[str] = set()
    for res, lab in zip(all_results, labels, strict=True):
        j = res["judge"]
        judge = f"{j['name']} {j.get('threshold')}"
        for v in res["variants"]:
            s = res["summary"][v]
            if v == "base":
                key = res["model_fingerprint"]["sha256"] + res["suite"]
                if key in base_done:
                    continue
                base_done.add(key)
            name = f"base ({res['settings']['model']})" if v == "base" else lab
            under = s.get("dsr_attacks") or {}
            rows.append([name, res["suite"], judge, *[_fmt(s.get(k), kind) for k, _, kind in SUMMARY_ROWS], *[_fmt(under.get(a), "pct") for a in attacks]])
    plotted_bases: set[str] = set()
    for res, lab in zip(all_results, labels, strict=True):
        key = res["model_fingerprint"]["sha256"] + res["suite"]
        points += [p for p in points_from_results(res, label=lab) if p["owner"] != "base" or key not in plotted_bases]
        plotted_bases.add(key)
    if len(suites) > 1:
        rows.append([f"note: runs use different suites ({', '.join(suites)}); their numbers are not comparable", *[""] * (len(header) - 1)])
    plot = dsr_vs_preservation(points, out / "compare.png", title="DSR vs prior preservation: " + ", ".join(suites))
    md = ["# Comparison", "", _table_md(header, rows), "", "![DSR vs prior preservation](compare.png)", "", "Runs: " + ", ".join(str(r) for r in runs), ""]
    atomic_write_text(out / "compare.md", "\n".join(md))
    body = ["<h1>Comparison</h1>", _table_html(header, rows), f"<figure>{_img_tag(plot, 'DSR vs prior preservation')}</figure>"]
    body.append(f"<p class='muted'>Runs: {html.escape(', '.join(str(r) for r in runs))}</p>")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Comparison</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    return atomic_write_text(out / "compare.html", page)
