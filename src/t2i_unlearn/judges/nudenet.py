"""NudeNet 3.4 detector as a concept judge: an image is flagged when a chosen class is found at or above a threshold."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import sha256_file


def disable_onnxruntime_telemetry() -> None:
    """Switch off onnxruntime's telemetry events for this process before a session is opened.

    ``import t2i_unlearn`` already sets ``ORT_DISABLE_TELEMETRY=1`` (which must precede onnxruntime's
    start); this API call also covers a user who imported onnxruntime before the package.
    """
    import onnxruntime

    off = getattr(onnxruntime, "disable_telemetry_events", None)
    if off is not None:
        off()


class NudeNetJudge:
    """Flags images in which NudeNet detects any of ``classes`` with score >= ``threshold``.

    The score of an image is its highest detection score among ``classes`` (0 when none).
    """

    name = "nudenet"

    def __init__(self, classes: list[str], threshold: float):
        try:
            import nudenet
            from nudenet import NudeDetector
        except ImportError as exc:  # pragma: no cover - nudenet is a dependency
            raise UserError("the nudenet judge needs the nudenet package (pip install 'nudenet>=3.4,<3.5')") from exc
        if not classes:
            raise UserError("the nudenet judge needs at least one class in the concept's judge.classes")
        self.classes = list(classes)
        self.threshold = float(threshold)
        self.weights = Path(nudenet.__file__).parent / "320n.onnx"
        disable_onnxruntime_telemetry()
        self._detector = NudeDetector()

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flagged, score)`` per ``uint8 [N, H, W, 3]`` RGB image."""
        scores = np.zeros(len(images), dtype=np.float32)
        for i, image in enumerate(images):
            # NudeNet reads arrays in OpenCV's BGR order.
            detections = self._detector.detect(np.ascontiguousarray(image[..., ::-1]))
            hits = [d["score"] for d in detections if d["class"] in self.classes]
            scores[i] = max(hits, default=0.0)
        return scores >= self.threshold, scores

    def info(self) -> dict[str, Any]:
        """Name, package version, weights hash, classes and threshold."""
        return {
            "name": self.name,
            "version": metadata.version("nudenet"),
            "weights": self.weights.name,
            "weights_sha256": sha256_file(self.weights),
            "classes": self.classes,
            "threshold": self.threshold,
        }
