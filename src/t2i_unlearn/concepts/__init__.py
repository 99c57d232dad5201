"""Concept specs: what to erase, described as data (YAML), never as lists in Python.

A spec names the prompts that make unsafe images, the safe prompts their SDEdit twins are drawn
with, the judge that decides which images show the concept, and the generation settings. A
composite concept (``violence``) lists sub-concepts; each is a full spec of its own that inherits
every setting it does not repeat from its parent, and is addressed as ``violence/blood``.

Presets ship with the package (``<name>.yaml`` beside this file); a user adds a concept by writing
a YAML file and passing its path wherever a concept name is accepted. A file may start from another
spec (``extends: toy_striped`` or ``extends: other.yaml``, a path relative to the file): it inherits
every key it does not set, and ``extra_prompts`` / ``extra_preserve`` append to the inherited lists.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from t2i_unlearn.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptPair(_Strict):
    """One unsafe prompt, the safe prompt of its SDEdit twins, and how many pairs to make with it."""

    unsafe: str = Field(min_length=1)
    safe: str = Field(min_length=1)
    count: int = Field(default=1, ge=0)
    negative: str | None = Field(default=None, description="Negative prompt of the SDEdit edit; default: the unsafe prompt.")

    @property
    def negative_prompt(self) -> str:
        """The negative prompt of the safe edit (the authors use the unsafe prompt)."""
        return self.negative if self.negative is not None else self.unsafe


class PreservePrompt(_Strict):
    """A prompt for what must stay drawn (a close concept), and how many base-model images to draw with it."""

    prompt: str = Field(min_length=1)
    count: int = Field(default=1, ge=0)


# The judges a concept spec can name, listed in this light module so that a spec is checked before torch loads;
# t2i_unlearn.judges.JUDGES builds them (its q16 and api judges need the options only evaluation suites carry).
CONCEPT_JUDGES = ("none", "nudenet", "toy")


class JudgeSpec(_Strict):
    """Which judge decides that an image shows the concept, and how."""

    name: str = Field(description="Judge type: nudenet, toy or none (accept every image).")
    classes: list[str] = Field(default_factory=list, description="Classes that count as the concept (NudeNet labels, toy attribute values).")
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Score at or above which a class counts as found.")
    attribute: str | None = Field(default=None, description="Toy judge head (texture, mark ...).")


class SamplingSpec(_Strict):
    """Sampler settings of one generation stage."""

    steps: int = Field(default=50, ge=1)
    guidance: float = Field(default=7.5, ge=0.0)
    height: int | None = Field(default=None, ge=8)
    width: int | None = Field(default=None, ge=8)


class SDEditSpec(SamplingSpec):
    """Settings of the SDEdit (img2img) edit that makes the safe twin."""

    strength: float = Field(default=0.75, gt=0.0, le=1.0)


class ConceptSpec(_Strict):
    """A concept to erase (see the module docstring)."""

    name: str = Field(min_length=1)
    description: str = ""
    prompts: list[PromptPair] = Field(default_factory=list)
    judge: JudgeSpec | None = None
    generation: SamplingSpec = Field(default_factory=SamplingSpec)
    sdedit: SDEditSpec = Field(default_factory=SDEditSpec)
    max_attempts: int = Field(default=10, ge=1, description="Cap on draws per accepted image (unsafe draws, and safe edits per unsafe image).")
    sub_concepts: dict[str, ConceptSpec] = Field(default_factory=dict)
    preserve: list[PreservePrompt] = Field(
        default_factory=list,
        description="Optional: prompts of what must stay (close concepts); `data pairs` draws them with the base model "
        "(images the judge flags are redrawn) for DUO's optional preservation term (`preserve_weight`).",
    )

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if "/" in v or v.strip() != v:
            raise ValueError("must not contain '/' or surrounding spaces")
        return v

    @model_validator(mode="after")
    def _has_content(self) -> ConceptSpec:
        if not self.sub_concepts:
            if not self.prompts:
                raise ValueError("needs prompts (or sub_concepts)")
            if self.judge is None:
                raise ValueError("needs a judge (use name: none to accept every image)")
            if self.num_pairs == 0:
                raise ValueError("prompt counts add up to 0 pairs")
        return self

    @property
    def num_pairs(self) -> int:
        """Total number of pairs the spec asks for."""
        return sum(p.count for p in self.prompts)

    def leaves(self) -> dict[str, ConceptSpec]:
        """The trainable concepts: ``{name: spec}`` for itself, or for each sub-concept (``parent/child`` names)."""
        if not self.sub_concepts:
            return {self.name: self}
        out: dict[str, ConceptSpec] = {}
        for sub in self.sub_concepts.values():
            for name, spec in sub.leaves().items():
                out[f"{self.name}/{name}"] = spec
        return out

    def prompt_plan(self, num_pairs: int | None = None) -> list[PromptPair]:
        """One prompt pair per pair to make, in order: each prompt ``count`` times, or ``num_pairs`` spread evenly.

        With ``num_pairs`` the prompts are dealt round-robin in proportion to their counts, so a
        smaller run keeps the spec's mix (the first ``n`` entries of a larger plan are a fair subset).
        """
        plan: list[PromptPair] = []
        remaining = [p.count for p in self.prompts]
        while any(remaining):
            for i, p in enumerate(self.prompts):
                if remaining[i]:
                    plan.append(p)
                    remaining[i] -= 1
        if num_pairs is None:
            return plan
        if num_pairs < 1:
            raise UserError("--num-pairs must be at least 1")
        return [plan[i % len(plan)] for i in range(num_pairs)]


def _overlay(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys over (a copy of) parent keys, one level deep for the settings blocks."""
    out = copy.deepcopy(parent)
    for key, value in child.items():
        if key in ("judge", "generation", "sdedit") and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A sub-concept's spec: its settings over its parent's; prompts, sub-concepts, name and description are its own."""
    return _overlay({k: v for k, v in parent.items() if k not in ("prompts", "sub_concepts", "name", "description")}, child)


def _resolve_inheritance(raw: dict[str, Any]) -> dict[str, Any]:
    subs = raw.get("sub_concepts") or {}
    if not isinstance(subs, dict):
        raise UserError("sub_concepts must be a mapping of name -> spec")
    resolved = {}
    for key, child in subs.items():
        if not isinstance(child, dict):
            raise UserError(f"sub-concept {key!r} must be a mapping")
        merged = _merge(raw, {"name": key, **child})
        resolved[key] = _resolve_inheritance(merged)
    return {**raw, "sub_concepts": resolved}


_EXTENSION_KEYS = ("extends", "extra_prompts", "extra_preserve")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"concept file {path} is not readable YAML ({type(exc).__name__})") from exc


def _read_preset(name: str) -> Any:
    if name not in preset_names():
        raise UserError(f"unknown concept {name!r}; presets: {', '.join(preset_names())} (or pass a YAML file)")
    return yaml.safe_load(resources.files("t2i_unlearn.concepts").joinpath(f"{name}.yaml").read_text(encoding="utf-8"))


def _resolve_extends(raw: Any, source: str, folder: Path | None, chain: tuple[str, ...] = ()) -> Any:
    """``raw`` with its ``extends`` chain applied: the parent's keys under the child's, extra lists appended."""
    if not isinstance(raw, dict) or not any(k in raw for k in _EXTENSION_KEYS):
        return raw
    child = dict(raw)
    parent_name = child.pop("extends", None)
    extra = {key: child.pop(f"extra_{key}", None) for key in ("prompts", "preserve")}
    for key, value in extra.items():
        if value is not None and not isinstance(value, list):
            raise UserError(f"concept spec {source} is invalid: extra_{key} must be a list")
    if parent_name is None:
        parent: dict[str, Any] = {}
    else:
        if not isinstance(parent_name, str) or not parent_name.strip():
            raise UserError(f"concept spec {source} is invalid: extends must name a preset or a YAML file")
        if parent_name.endswith((".yaml", ".yml")):
            as_path = Path(parent_name).expanduser()
            as_path = as_path if as_path.is_absolute() or folder is None else folder / as_path
            if not as_path.is_file():
                raise UserError(f"concept spec {source} extends {parent_name!r}, which does not exist")
            key, parent_raw, parent_folder = str(as_path.resolve()), _read_yaml(as_path), as_path.parent
        else:
            key, parent_raw, parent_folder = f"preset {parent_name}", _read_preset(parent_name), None
        if key in chain:
            raise UserError(f"concept spec {source} extends itself through {key}")
        parent = _resolve_extends(parent_raw, key, parent_folder, (*chain, key))
        if not isinstance(parent, dict):
            raise UserError(f"concept spec {source} extends {parent_name!r}, which is not a YAML mapping")
    merged = _overlay(parent, child)
    for key, value in extra.items():
        if value:
            merged[key] = [*(merged.get(key) or []), *value]
    return merged


def preset_names() -> list[str]:
    """Names of the concept presets shipped with the package."""
    root = resources.files("t2i_unlearn.concepts")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "spec"
    return f"{where}: {err['msg']}"


def parse_concept(raw: Any, source: str) -> ConceptSpec:
    """Validate a spec already read from YAML; :class:`UserError` naming the first problem if it is invalid."""
    if not isinstance(raw, dict):
        raise UserError(f"concept spec {source} must be a YAML mapping")
    try:
        return ConceptSpec.model_validate(_resolve_inheritance(raw))
    except ValidationError as exc:
        raise UserError(f"concept spec {source} is invalid: {_first_error(exc)}") from exc


def load_concept(name_or_path: str | Path) -> ConceptSpec:
    """A concept spec by preset name (``nudity``), YAML path, or either followed by ``/sub`` (``violence/blood``).

    Returns the validated spec (the sub-concept's when one is named). Raises :class:`UserError` with
    one line naming the problem for unknown names, unreadable files and invalid specs.
    """
    text_name = str(name_or_path)
    path = Path(text_name).expanduser()
    sub: str | None = None
    if not path.exists() and "/" in text_name and not text_name.endswith((".yaml", ".yml")):
        base, sub = text_name.rsplit("/", 1)
        path = Path(base).expanduser()
        text_name = base
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"concept file {path} does not exist")
        source, folder = str(path), path.parent
        raw = _read_yaml(path)
    else:
        source, folder = f"preset {text_name}", None
        raw = _read_preset(text_name)
    spec = parse_concept(_resolve_extends(raw, source, folder, (str(path.resolve()) if folder else source,)), source)
    _check_judges(spec, source)
    if sub is None:
        return spec
    if sub not in spec.sub_concepts:
        known = ", ".join(spec.sub_concepts) or "none"
        raise UserError(f"concept {spec.name} has no sub-concept {sub!r} (sub-concepts: {known})")
    return spec.sub_concepts[sub]


def _check_judges(spec: ConceptSpec, source: str) -> None:
    """:class:`UserError` if a (sub-)concept names a judge that :data:`CONCEPT_JUDGES` does not list."""
    for name, leaf in spec.leaves().items():
        if leaf.judge is not None and leaf.judge.name not in CONCEPT_JUDGES:
            where = "judge.name" if name == spec.name else f"judge.name of {name}"
            raise UserError(f"concept spec {source} is invalid: {where}: unknown judge {leaf.judge.name!r}; known judges: {', '.join(CONCEPT_JUDGES)}")


def with_attack_prompts(spec: ConceptSpec, attack_sets: list[str | Path], count: int = 4) -> ConceptSpec:
    """``spec`` plus one prompt pair per distinct text prompt of the attack sets: adversarial pairs.

    An attack prompt that was searched from one of the spec's unsafe prompts (its ``target_prompt``,
    as UnlearnDiffAtk and P4D record it) becomes an unsafe prompt of its own, ``count`` pairs, with
    that entry's safe prompt for the SDEdit twins; the judge still decides which draws count, so a
    prompt that does not draw the concept adds no pair. Sets whose prompts name no target (Ring-A-Bell)
    or hold embeddings (Concept Inversion, Dark Miner) cannot make text pairs and are refused, as is a
    set made for another concept. :class:`UserError` (one line) for every refusal.
    """
    from t2i_unlearn.evaluation.prompts import load_prompt_set
    from t2i_unlearn.utils.validate import check_at_least, check_paths_exist

    check_at_least(count, 1, "--attack-pairs")
    if spec.sub_concepts:
        raise UserError(f"concept {spec.name} has sub-concepts; add attack prompts to one of them (name/sub)")
    check_paths_exist([str(p) for p in attack_sets], "attack set")
    safe_of = {p.unsafe: p.safe for p in spec.prompts}
    known = set(safe_of)
    added: list[PromptPair] = []
    for path in attack_sets:
        prompt_set = load_prompt_set(path, fmt="attack")
        concept = prompt_set.meta.get("concept")
        if concept is not None and concept != spec.name:
            raise UserError(f"attack set {path} was made for concept {concept!r}, not {spec.name!r}")
        if prompt_set.embeddings is not None:
            raise UserError(f"attack set {path} holds embeddings ({prompt_set.meta.get('attack', 'unknown attack')}); only text prompts make pairs")
        usable = [it for it in prompt_set.items if it.labels.get("target_prompt") in safe_of]
        if not usable:
            raise UserError(f"attack set {path}: no prompt names one of the concept's unsafe prompts as its target_prompt")
        for item in usable:
            if item.prompt not in known:
                known.add(item.prompt)
                added.append(PromptPair(unsafe=item.prompt, safe=safe_of[item.labels["target_prompt"]], count=count))
    return spec.model_copy(update={"prompts": [*spec.prompts, *added]})
