"""Report figures: labels of points at one place are merged instead of printed over each other."""

from __future__ import annotations

from pathlib import Path


def test_labels_at_one_place_are_merged(tmp_path: Path) -> None:
    from t2i_unlearn.report.plots import dsr_vs_preservation, label_groups

    points = [
        {"label": "base", "x": 1.0, "y": 0.0, "kind": "base"},
        {"label": "DUO", "x": 0.9, "y": 0.95, "kind": "model"},
        {"label": "DUO / ring_a_bell", "x": 0.9, "y": 0.95, "kind": "attack", "owner": "DUO", "from": 0.95},
        {"label": "DUO / p4d", "x": 0.9, "y": 0.5, "kind": "attack", "owner": "DUO", "from": 0.95},
        {"label": "ESD", "x": 0.995, "y": 0.01, "kind": "model"},  # next to the base: one label for both
        {"label": "no x", "x": None, "y": 0.3, "kind": "model"},
    ]
    groups = label_groups(points)
    assert groups == [(1.0, 0.0, "base\nESD"), (0.9, 0.95, "DUO\nDUO / ring_a_bell"), (0.9, 0.5, "DUO / p4d")]
    out = dsr_vs_preservation(points, tmp_path / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
