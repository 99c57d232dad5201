"""Judges: decide whether images show a concept.

A judge is built by name from a concept spec's ``judge`` block and answers one question per image:
does it show the concept? ``flags(images)`` takes ``uint8 [N, H, W, 3]`` RGB images and returns
``(flagged bool [N], score float [N])``; ``info()`` records what the judge was (name, version,
weights hash, classes, threshold) so that data made with it says how it was filtered.

Judges: ``nudenet`` (NudeNet 3.4 detector), ``toy`` (the toy world's judge heads) and ``none``
(flags nothing: for concepts filtered by no detector).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from t2i_unlearn.concepts import JudgeSpec
from t2i_unlearn.errors import UserError


class Judge(Protocol):
    """What every judge offers."""

    name: str

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flagged bool [N], score float [N])`` for ``uint8 [N, H, W, 3]`` RGB images."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-serialisable description: name, version, weights hash, classes, threshold."""
        ...


class NoJudge:
    """Flags nothing (score 0). Pair generation reads ``none`` as "no filter": every unsafe draw and safe edit is kept."""

    name = "none"

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """No image is flagged."""
        return np.zeros(len(images), dtype=bool), np.zeros(len(images), dtype=np.float32)

    def info(self) -> dict[str, Any]:
        """Only the name: there is nothing else to record."""
        return {"name": self.name}


def _build_none(spec: JudgeSpec, model: str | None) -> Judge:
    return NoJudge()


def _build_nudenet(spec: JudgeSpec, model: str | None) -> Judge:
    from t2i_unlearn.judges.nudenet import NudeNetJudge

    return NudeNetJudge(classes=spec.classes, threshold=spec.threshold)


def _build_toy(spec: JudgeSpec, model: str | None) -> Judge:
    from t2i_unlearn.judges.toy import ToyConceptJudge, find_toy_judges

    return ToyConceptJudge(find_toy_judges(model), attribute=spec.attribute, classes=spec.classes, threshold=spec.threshold)


def _build_q16(spec: JudgeSpec, model: str | None) -> Judge:
    from t2i_unlearn.judges.q16 import build_q16

    return build_q16(spec, model)


def _build_api(spec: JudgeSpec, model: str | None) -> Judge:
    from t2i_unlearn.judges.api import build_api

    return build_api(spec, model)


JUDGES: dict[str, Callable[[JudgeSpec, str | None], Judge]] = {
    "none": _build_none,
    "nudenet": _build_nudenet,
    "toy": _build_toy,
    "q16": _build_q16,  # options: clip_model, embeddings (evaluation judge blocks)
    "api": _build_api,  # options: callable or command (evaluation judge blocks)
}


# The option keys each judge reads from a judge block's ``options`` (judges/q16.py, judges/api.py); the others read none.
JUDGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "q16": ("clip_model", "embeddings", "device"),
    "api": ("callable", "command", "question", "version", "timeout", "batch_size"),
}


def build_judge(spec: JudgeSpec, model: str | None = None) -> Judge:
    """The judge a concept spec names. ``model`` (id or path of the pipeline) lets the toy judge find its world.

    Raises :class:`UserError` for unknown judge names or unusable settings.
    """
    if spec.name not in JUDGES:
        raise UserError(f"unknown judge {spec.name!r}; known judges: {', '.join(sorted(JUDGES))}")
    return JUDGES[spec.name](spec, model)


__all__ = ["JUDGES", "JUDGE_OPTIONS", "Judge", "NoJudge", "build_judge"]
