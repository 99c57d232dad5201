"""Plots of evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from t2i_unlearn.utils.io import atomic_write_bytes


def label_groups(points: list[dict[str, Any]], x_tol: float = 0.01, y_tol: float = 0.03) -> list[tuple[float, float, str]]:
    """One ``(x, y, text)`` label per place: labels of points closer than ``x_tol`` / ``y_tol`` are merged.

    Points at one place (the base and a model that did not move, two attacks with the same DSR)
    would print their labels on top of each other; their labels are listed one per line instead,
    in the order of ``points``. Points without an x or y are skipped.
    """
    groups: list[tuple[float, float, list[str]]] = []
    for p in points:
        if p.get("x") is None or p.get("y") is None:
            continue
        for gx, gy, labels in groups:
            if abs(p["x"] - gx) <= x_tol and abs(p["y"] - gy) <= y_tol:
                if p["label"] not in labels:
                    labels.append(p["label"])
                break
        else:
            groups.append((p["x"], p["y"], [p["label"]]))
    return [(x, y, "\n".join(labels)) for x, y, labels in groups]


def _save_dsr_axes(fig: Any, ax: Any, points: list[dict[str, Any]], title: str, out: str | Path) -> Path:
    """Label and bound the DSR (y) / prior preservation (x) axes, write the figure as PNG to ``out`` and close it."""
    import io

    import matplotlib.pyplot as plt

    ax.set_xlabel("prior preservation (1 - perceptual distance to base)")
    ax.set_ylabel("defense success rate")
    ax.set_ylim(-0.03, 1.03)
    xs = [p["x"] for p in points if p.get("x") is not None]
    if xs:
        lo = min(xs)
        ax.set_xlim(min(lo - 0.05, 0.95 * lo), 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())


def dsr_vs_preservation(points: list[dict[str, Any]], out: str | Path, title: str = "DSR vs prior preservation") -> Path:
    """The DUO paper's Figure 4: DSR (y) against 1 - perceptual distance (x), one point per model.

    Each point is ``{"label", "x", "y", "kind"}`` with kind ``base``, ``model`` or ``attack`` (drawn
    hollow, joined to its model's point). Points without an x or y are skipped; points at one place
    share one label listing them all (:func:`label_groups`). Returns ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.5), dpi=120)
    styles = {"base": dict(marker="s", color="#555555", s=70), "model": dict(marker="o", s=70), "attack": dict(marker="^", s=55, facecolors="none")}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    model_colour: dict[str, str] = {}
    for p in points:
        if p.get("x") is None or p.get("y") is None:
            continue
        kind = p.get("kind", "model")
        style = dict(styles[kind])
        owner = p.get("owner", p["label"])
        if kind != "base":
            colour = model_colour.setdefault(owner, colours[len(model_colour) % len(colours)])
            if kind == "attack":
                style["edgecolors"] = colour
            else:
                style["color"] = colour
        ax.scatter([p["x"]], [p["y"]], zorder=3, **style)
        if kind == "attack" and p.get("from") is not None:
            ax.plot([p["x"], p["x"]], [p["from"], p["y"]], ls=":", color=model_colour.get(owner, "grey"), lw=1, zorder=2)
    for x, y, text in label_groups(points):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8, va="bottom")
    return _save_dsr_axes(fig, ax, points, title, out)


def points_from_results(results: dict[str, Any], label: str | None = None) -> list[dict[str, Any]]:
    """Scatter points of one run: the base model, the evaluated model, and the model under each attack."""
    label = label or results.get("label", "model")
    points = []
    for variant, s in results["summary"].items():
        name = "base" if variant == "base" else label
        kind = "base" if variant == "base" else "model"
        x = s.get("prior_preservation", 1.0 if variant == "base" else None)
        points.append({"label": name, "x": x, "y": s.get("dsr"), "kind": kind, "owner": name})
        for attack, dsr in (s.get("dsr_attacks") or {}).items():
            points.append({"label": f"{name} / {attack.removeprefix('attack:')}", "x": x, "y": dsr, "kind": "attack", "owner": name, "from": s.get("dsr")})
    return points


ATTACK_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">")


def bench_scatter(points: list[dict[str, Any]], columns: list[str], out: str | Path, title: str = "DSR vs prior preservation") -> Path:
    """The bench's scatter: one colour per method, one marker per attack column (``plain`` first, filled).

    Each point is ``{"method", "column", "x", "y"}`` with x the method's prior preservation and y its
    DSR in that column; points without an x or y are skipped. Returns ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(p["method"] for p in points))
    colour = {m: colours[i % len(colours)] for i, m in enumerate(methods)}
    marker = {c: ATTACK_MARKERS[i % len(ATTACK_MARKERS)] for i, c in enumerate(columns)}
    for p in points:
        if p.get("x") is None or p.get("y") is None:
            continue
        c = colour[p["method"]]
        face = c if p["column"] == columns[0] else "none"
        ax.scatter([p["x"]], [p["y"]], marker=marker[p["column"]], s=60, zorder=3, color=face, edgecolors=c)
    handles = [Line2D([], [], ls="", marker="o", color=colour[m], label=m) for m in methods]
    for i, col in enumerate(columns):
        handles.append(Line2D([], [], ls="", marker=marker[col], color="grey", markerfacecolor="grey" if i == 0 else "none", label=col))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save_dsr_axes(fig, ax, points, title, out)
