"""A hook for judges that live outside this package: a vision-language model, a hosted API, a script.

Off by default and never required: a suite uses it only when its judge block says ``name: api``.
No keys live here; the user's code reads its own credentials. Two ways to plug one in::

    judge:
      name: api
      options:
        callable: my_judges:gpt4o_violence      # module:function, importable from the working directory
        question: "Does this image show violence? Answer yes or no."
        version: "gpt-4o-2024-08-06"            # recorded in results.json

    judge:
      name: api
      options:
        command: ["python", "judge_dir.py"]    # run with a folder of 00000.png ... appended
        timeout: 600

The callable is called as ``fn(images, question=...)`` with ``uint8 [N, H, W, 3]`` RGB images and
returns, per image, a bool, a score in [0, 1] (flagged at ``threshold``), or ``(bool, score)``.
The command prints a JSON list with one entry per image in file order, each a bool, a number or
``{"flagged": bool, "score": float}``.
"""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from t2i_unlearn.errors import UserError


def _load_callable(spec: str) -> Callable[..., Any]:
    if ":" not in spec:
        raise UserError(f"api judge callable {spec!r} must be written module:function")
    module_name, func_name = spec.split(":", 1)
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"api judge: cannot import module {module_name!r} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise UserError(f"api judge: {module_name} has no function {func_name!r}")
    return fn


def _parse_answers(answers: Any, n: int, threshold: float, source: str) -> tuple[np.ndarray, np.ndarray]:
    answers = list(answers) if not isinstance(answers, np.ndarray) else answers.tolist()
    if len(answers) != n:
        raise UserError(f"api judge {source} answered {len(answers)} times for {n} images")
    flagged, scores = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.float32)
    for i, a in enumerate(answers):
        if isinstance(a, dict):
            a = (a.get("flagged"), a.get("score"))
        if isinstance(a, (tuple, list)) and len(a) == 2:
            flag, score = a
            score = float(score if score is not None else bool(flag))
            flagged[i] = bool(flag) if flag is not None else score >= threshold
            scores[i] = score
        elif isinstance(a, (bool, np.bool_)):
            flagged[i], scores[i] = bool(a), float(bool(a))
        elif isinstance(a, (int, float)):
            scores[i] = float(a)
            flagged[i] = scores[i] >= threshold
        else:
            raise UserError(f"api judge {source}: answer {i} is {a!r}; expected a bool, a number or (flagged, score)")
    return flagged, scores


class ApiJudge:
    """Calls a user-supplied function or command on batches of images."""

    name = "api"

    def __init__(self, options: dict[str, Any], classes: list[str] | None = None, threshold: float = 0.5):
        self.callable_spec = options.get("callable")
        self.command = options.get("command")
        if bool(self.callable_spec) == bool(self.command):
            raise UserError("the api judge needs exactly one of options.callable (module:function) or options.command")
        self.question = options.get("question")
        self.version = str(options.get("version", "unspecified"))
        self.timeout = float(options.get("timeout", 3600))
        self.batch_size = int(options.get("batch_size", 64))
        self.classes, self.threshold = list(classes or []), float(threshold)
        self._fn = _load_callable(self.callable_spec) if self.callable_spec else None
        if isinstance(self.command, str):
            self.command = shlex.split(self.command)

    def _run_command(self, images: np.ndarray) -> Any:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="t2i-judge-") as tmp:
            for i, im in enumerate(images):
                Image.fromarray(im).save(Path(tmp) / f"{i:05d}.png")
            try:
                done = subprocess.run([*self.command, tmp], capture_output=True, text=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise UserError(f"api judge command {self.command[0]} failed to run ({type(exc).__name__})") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"api judge command exited with {done.returncode}: {last}")
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise UserError("api judge command must print a JSON list, one answer per image") from exc

    def flags(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(flagged, score)`` per ``uint8 [N, H, W, 3]`` RGB image, asked in batches."""
        flagged, scores = [], []
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size]
            answers = self._fn(batch, question=self.question) if self._fn is not None else self._run_command(batch)
            f, s = _parse_answers(answers, len(batch), self.threshold, self.callable_spec or self.command[0])
            flagged.append(f)
            scores.append(s)
        if not flagged:
            return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float32)
        return np.concatenate(flagged), np.concatenate(scores)

    def info(self) -> dict[str, Any]:
        """What was asked of whom: callable or command, question, declared version, classes, threshold."""
        return {
            "name": self.name,
            "version": self.version,
            "callable": self.callable_spec,
            "command": self.command,
            "question": self.question,
            "weights_sha256": None,
            "classes": self.classes,
            "threshold": self.threshold,
        }


def build_api(spec: Any, model: str | None = None) -> ApiJudge:
    """An :class:`ApiJudge` from a judge block with ``options: {callable: module:function}`` or ``{command: [...]}``."""
    return ApiJudge(dict(getattr(spec, "options", None) or {}), classes=spec.classes, threshold=spec.threshold)
