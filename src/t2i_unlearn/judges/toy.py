"""The toy world's judge as a concept judge: flags an image when one head's probability for the concept's values is high."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError
from t2i_unlearn.utils.io import sha256_file


def find_toy_judges(model: str | None) -> Path:
    """The ``judges/`` directory of the toy world that ``model`` (``toy[:preset]``, a world dir or its ``pipeline/``) belongs to."""
    if model is None:
        raise UserError("the toy judge needs the toy model (pass --model toy, toy:quick or a toy world directory)")
    from t2i_unlearn.models import resolve_model

    pipeline = Path(resolve_model(model))
    judges = pipeline.parent / "judges"
    if not (judges / "judge_config.json").exists():
        raise UserError(f"model {model} is not a toy world (no judges/ beside its pipeline); the toy judge only works with toy models")
    return judges


class ToyConceptJudge:
    """Flags an image when ``sum(p[attribute == v] for v in classes) >= threshold``; that sum is the score."""

    name = "toy"

    def __init__(self, judges_dir: str | Path, attribute: str | None, classes: list[str], threshold: float):
        from t2i_unlearn.toy.judges import load_judge

        self.judges_dir = Path(judges_dir)
        self.judge = load_judge(self.judges_dir)
        heads = self.judge.heads_spec
        if attribute not in heads:
            raise UserError(f"toy judge has no attribute {attribute!r}; attributes: {', '.join(heads)}")
        unknown = [c for c in classes if c not in heads[attribute]]
        if not classes or unknown:
            raise UserError(f"toy judge classes for {attribute} must be among {', '.join(heads[attribute])}; got {classes}")
        self.attribute, self.classes, self.threshold = attribute, list(classes), float(threshold)
        self._index = [heads[attribute].index(c) for c in classes]

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flagged, score)`` per ``uint8 [N, H, W, 3]`` RGB image."""
        from t2i_unlearn.toy.judges import predict

        if len(images) == 0:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float32)
        probs = predict(self.judge, images)[self.attribute]
        scores = probs[:, self._index].sum(axis=1).astype(np.float32)
        return scores >= self.threshold, scores

    def info(self) -> dict[str, Any]:
        """Name, weights hash, attribute, classes and threshold."""
        return {
            "name": self.name,
            "weights": str(self.judges_dir),
            "weights_sha256": sha256_file(self.judges_dir / "judge.safetensors"),
            "attribute": self.attribute,
            "classes": self.classes,
            "threshold": self.threshold,
        }
