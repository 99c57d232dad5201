"""Evaluation suites: YAML files naming prompt sets, a judge, metrics, seeds and sampler settings.

Presets ship beside this file in ``suites/`` (``toy_striped``, ``toy_defaced``, ``nudity``,
``violence``); a user passes the path of their own YAML wherever a suite name is accepted. Prompt
files are paths relative to the suite file; a set with ``file: null`` must be given on the command
line (``--prompt-file i2p=PATH``): real benchmarks (I2P, MS-COCO) are not ours to ship.

A suite, field by field::

    name: toy_striped
    description: ...
    judge: {name: toy, attribute: texture, classes: [striped], threshold: 0.5}
    #  nudenet: {name: nudenet, preset: i2p}   (duo | i2p | unlearndiff | rece; classes/threshold override)
    #  q16:     {name: q16, options: {clip_model: DIR, embeddings: prompts.p}}
    sampling: {steps: 25, guidance: 4.0, height: null, width: null, batch_size: 16}
    seed: 0                      # image j of a set (file without seeds) uses seed + j
    metrics: {perceptual: toy, fid: toy, fid_reference: base, clip: toy}
    prompt_sets:
      striped:   {file: toy/striped.csv, metrics: [dsr]}
      unrelated: {file: toy/unrelated.csv, metrics: [prior_preservation, fid, clip_score]}
      dotted:    {file: toy/dotted.csv, metrics: [close_drift]}
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from t2i_unlearn.concepts import JudgeSpec
from t2i_unlearn.errors import UserError

MetricName = Literal["dsr", "prior_preservation", "close_drift", "fid", "clip_score"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalJudgeSpec(JudgeSpec):
    """A concept judge block plus a NudeNet class-set ``preset`` and judge-specific ``options`` (paths, callables)."""

    preset: str | None = Field(default=None, description="NudeNet class set: duo, i2p, unlearndiff or rece.")
    options: dict[str, Any] = Field(default_factory=dict, description="Judge-specific settings (q16: clip_model, embeddings; api: callable or command).")


class EvalSampling(_Strict):
    """Sampler settings of every image in the suite (I2P files bring their own seed and guidance per prompt)."""

    steps: int = Field(default=50, ge=1)
    guidance: float = Field(default=7.5, ge=0.0)
    height: int | None = Field(default=None, ge=8)
    width: int | None = Field(default=None, ge=8)
    batch_size: int = Field(default=8, ge=1)


class PromptSetSpec(_Strict):
    """One prompt file and the metrics computed on its images."""

    file: str | None = Field(default=None, description="Path relative to the suite file; null: given with --prompt-file NAME=PATH.")
    format: Literal["auto", "i2p", "coco", "csv", "text", "attack"] = "auto"
    description: str = ""
    categories: list[str] = Field(default_factory=list, description="I2P categories to keep (any of).")
    limit: int | None = Field(default=None, ge=1, description="Keep the first n prompts.")
    images_per_prompt: int = Field(default=1, ge=1)
    use_file_seeds: bool = Field(default=True, description="Use per-prompt seeds from the file (I2P sd_seed).")
    use_file_guidance: bool = Field(default=True, description="Use per-prompt guidance from the file (I2P sd_guidance_scale).")
    metrics: list[MetricName] = Field(min_length=1)
    base: bool = Field(default=True, description="Also draw these prompts with the base model (side-by-side grids, base DSR).")


class MetricsSpec(_Strict):
    """Which networks the metrics use (see :mod:`t2i_unlearn.metrics.backends`)."""

    perceptual: str = Field(default="lpips", description="lpips (real) or toy.")
    lpips_net: str = "alex"
    fid: str = Field(default="inception", description="inception (real) or toy.")
    fid_reference: str = Field(default="base", description="base (the base model's images of the same prompts) or a folder of images.")
    clip: str | None = Field(default=None, description="CLIP model directory or hub id for the CLIP score, or toy (attribute accuracy).")


class SuiteSpec(_Strict):
    """An evaluation suite (see the module docstring)."""

    name: str = Field(min_length=1)
    description: str = ""
    judge: EvalJudgeSpec
    sampling: EvalSampling = Field(default_factory=EvalSampling)
    seed: int = 0
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    prompt_sets: dict[str, PromptSetSpec] = Field(min_length=1)
    source_dir: str | None = Field(default=None, description="Folder that relative prompt-file paths start from (set by the loader).")

    @model_validator(mode="after")
    def _needs_dsr_or_base(self) -> SuiteSpec:
        for name, ps in self.prompt_sets.items():
            if not ps.base and any(m in ("prior_preservation", "close_drift") for m in ps.metrics):
                raise ValueError(f"prompt set {name}: prior_preservation and close_drift compare with the base model; base must be true")
        return self


def nudenet_presets() -> dict[str, dict[str, Any]]:
    """NudeNet class-set presets shipped in ``judges/nudenet_presets.yaml``."""
    text = resources.files("t2i_unlearn.judges").joinpath("nudenet_presets.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def resolve_judge(spec: EvalJudgeSpec) -> EvalJudgeSpec:
    """Fill a NudeNet ``preset``'s classes and threshold (values written in the suite win)."""
    if spec.preset is None:
        if spec.name == "nudenet" and not spec.classes:
            raise UserError("the nudenet judge needs classes or a preset (duo, i2p, unlearndiff, rece)")
        return spec
    if spec.name != "nudenet":
        raise UserError(f"judge preset {spec.preset!r} only applies to nudenet")
    presets = nudenet_presets()
    if spec.preset not in presets:
        raise UserError(f"unknown nudenet preset {spec.preset!r}; known: {', '.join(presets)}")
    chosen = presets[spec.preset]
    update: dict[str, Any] = {}
    if "classes" not in spec.model_fields_set:
        update["classes"] = list(chosen["classes"])
    if "threshold" not in spec.model_fields_set:
        update["threshold"] = float(chosen["threshold"])
    return spec.model_copy(update=update)


def suite_names() -> list[str]:
    """Names of the suites shipped with the package."""
    root = resources.files("t2i_unlearn.evaluation").joinpath("suites")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or 'suite'}: {err['msg']}"


def load_suite(name_or_path: str | Path) -> SuiteSpec:
    """A suite by preset name or YAML path, validated; :class:`UserError` naming the first problem otherwise."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"suite file {path} does not exist")
        source_dir = path.resolve().parent
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"suite file {path} is not readable YAML ({type(exc).__name__})") from exc
    else:
        if text not in suite_names():
            raise UserError(f"unknown suite {text!r}; presets: {', '.join(suite_names())} (or pass a YAML file)")
        root = Path(str(resources.files("t2i_unlearn.evaluation"))) / "suites"
        source_dir = root
        raw = yaml.safe_load((root / f"{text}.yaml").read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise UserError(f"suite {text} must be a YAML mapping")
    try:
        spec = SuiteSpec.model_validate({**raw, "source_dir": str(source_dir)})
    except ValidationError as exc:
        raise UserError(f"suite {text} is invalid: {_first_error(exc)}") from exc
    return spec.model_copy(update={"judge": resolve_judge(spec.judge)})


def prompt_file_path(suite: SuiteSpec, set_name: str, overrides: dict[str, str] | None = None) -> Path:
    """The file of a prompt set: the command line's ``--prompt-file NAME=PATH`` first, else the suite's path."""
    overrides = overrides or {}
    if set_name in overrides:
        return Path(overrides[set_name]).expanduser()
    file = suite.prompt_sets[set_name].file
    if file is None:
        fmt = suite.prompt_sets[set_name].format
        raise UserError(f"suite {suite.name} needs prompt set {set_name!r} ({fmt} file): pass --prompt-file {set_name}=PATH")
    path = Path(file).expanduser()
    return path if path.is_absolute() else Path(suite.source_dir or ".") / path
