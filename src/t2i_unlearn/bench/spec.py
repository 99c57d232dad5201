"""Bench suites: YAML files naming a model, a concept, an evaluation suite, method entries and attack entries.

Suites ship beside this file in ``suites/`` (``demo``, ``toy-full``, ``nudity``); a user passes the path
of their own YAML wherever a suite name is accepted. Methods and attacks are looked up by their
registry names (:data:`t2i_unlearn.methods.METHODS`, :data:`t2i_unlearn.attacks.ATTACKS`): a newly
registered method joins a bench by being named in a suite, with no code change. Nothing here imports
torch. The format, field by field, is in docs/bench.md::

    name: demo
    model: toy                       # default --model
    concept: toy_striped             # concept spec: pair data, attack prompts and the attacks' judge
    eval: {suite: toy_striped, limit: 16}
    pairs: {num_pairs: 24, seed: 0}  # for methods with data: pairs (DUO)
    methods:
      - {name: base}                 # the model itself (method: base)
      - {name: esd, config: toy, settings: {iterations: 30}}
      - {name: duo, config: toy, data: pairs, settings: {max_steps: 150}}
      - {name: darkminer, config: toy, optional: true}   # skipped while not registered
    attacks:
      - {name: ring_a_bell, budget: {iterations: 30}, settings: {population: 64}, images_per_prompt: 4}
    costs: {source: "...", per_image_s: 0.13, methods: {duo: {per_step_s: 0.65}}, attacks: {...}}
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from t2i_unlearn.errors import UserError

BASE = "base"
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"{value!r} must be lower-case letters, digits, '_', '-' or '.' (it names folders and result keys)")
    return value


Id = Annotated[str, AfterValidator(_check_id)]


class MethodEntry(_Strict):
    """One row of the bench: a registered method with its preset and settings (or the base model itself)."""

    name: Id = Field(description="Row id (folders, result keys); also the registry name unless `method` is given.")
    method: str | None = Field(default=None, description="Registry name (default: name); `base` is the model without any edit.")
    label: str | None = Field(default=None, description="Name in tables and plots (default: the method's name in capitals).")
    config: str | None = Field(default=None, description="The method's preset name or a YAML file (relative to the suite file).")
    settings: dict[str, Any] = Field(default_factory=dict, description="Overrides of the method's config fields.")
    data: Literal["concept", "pairs"] = Field(default="concept", description="What train() takes: the concept spec, or the bench's pair folder.")
    optional: bool = Field(default=False, description="Skip (with a note) while the method is not registered, instead of an error.")


    @property
    def registry_name(self) -> str:
        """The name the methods registry knows."""
        return self.method or self.name

    @property
    def is_base(self) -> bool:
        """Whether this row is the unedited model."""
        return self.registry_name == BASE

    @property
    def display(self) -> str:
        """The row's name in tables."""
        return self.label or ("base" if self.is_base else self.name.upper())


class BudgetSpec(_Strict):
    """An attack's caps (:class:`~t2i_unlearn.attacks.AttackBudget`); unset caps fall back to the attack's config."""

    iterations: int | None = Field(default=None, ge=1)
    queries: int | None = Field(default=None, ge=1)
    time_s: float | None = Field(default=None, gt=0)


class AttackEntry(_Strict):
    """One column of the bench: a registered attack with its budget, settings and source prompts."""

    name: Id = Field(description="Column id; also the registry name unless `attack` is given.")
    attack: str | None = None
    label: str | None = None
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    settings: dict[str, Any] = Field(default_factory=dict)
    prompts: list[str] | None = Field(default=None, description="Source prompts (default: the concept's safe prompts).")
    images_per_prompt: int = Field(default=1, ge=1)
    seed: int = 0


    @property
    def registry_name(self) -> str:
        """The name the attack registry knows."""
        return (self.attack or self.name).replace("-", "_").lower()

    @property
    def display(self) -> str:
        """The column's name in tables."""
        return self.label or self.name


class EvalSpec(_Strict):
    """Which evaluation suite scores every method, and how much of it."""

    suite: str = Field(description="Evaluation suite preset (toy_striped, nudity ...) or YAML file relative to the suite file.")
    limit: int | None = Field(default=None, ge=1, description="Only the first N prompts of every prompt set.")
    steps: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    clip_model: str | None = None
    prompt_files: dict[str, str] = Field(default_factory=dict, description="SET: PATH for sets with file: null (relative to the suite file).")
    target_set: str | None = Field(default=None, description="The set --prompts-file fills (e.g. i2p_sexual).")
    coco_set: str | None = Field(default=None, description="The set --coco-file fills (e.g. coco).")


class PairsSpec(_Strict):
    """Pair data for methods with ``data: pairs``."""

    num_pairs: int | None = Field(default=None, ge=1, description="Default: the concept spec's counts.")
    seed: int = 0
    batch_size: int = Field(default=8, ge=1)


class CostEntry(_Strict):
    """Cost of one method or attack on the suite's device."""

    per_step_s: float | None = Field(default=None, ge=0, description="Seconds per training step / attack iteration.")
    per_run_s: float | None = Field(default=None, ge=0, description="Fixed seconds per run (closed-form edits, set-up).")
    per_prompt: bool = Field(default=False, description="Attack iterations are per source prompt (one search each).")
    source: str | None = None


class CostSpec(_Strict):
    """Per-image and per-step costs for the dry run's estimate, with where each figure comes from."""

    device: str = "unknown device"
    source: str = Field(default="", description="Where the figures come from; 'estimate, source: ...' until measured.")
    per_image_s: float = Field(default=0.0, ge=0)
    per_pair_s: float = Field(default=0.0, ge=0)
    methods: dict[str, CostEntry] = Field(default_factory=dict)
    attacks: dict[str, CostEntry] = Field(default_factory=dict)


class PictureSpec(_Strict):
    """A before/after picture: the first images of some prompt sets, one row per method, same seeds in every row."""

    sets: list[str] = Field(min_length=1, description="Prompt sets of the evaluation suite, in column order.")
    per_set: int = Field(default=4, ge=1, le=16)
    file: str = Field(default="before_after.png", pattern=r"^[A-Za-z0-9_.-]+\.png$")


class BenchSuite(_Strict):
    """A bench suite (see the module docstring and docs/bench.md)."""

    name: str = Field(min_length=1)
    description: str = ""
    model: str | None = None
    concept: str
    device: str | None = None
    eval: EvalSpec
    pairs: PairsSpec = Field(default_factory=PairsSpec)
    methods: list[MethodEntry] = Field(min_length=1)
    attacks: list[AttackEntry] = Field(default_factory=list)
    costs: CostSpec = Field(default_factory=CostSpec)
    picture: PictureSpec | None = None
    source_dir: str | None = Field(default=None, description="Folder that relative paths start from (set by the loader).")

    @model_validator(mode="after")
    def _unique(self) -> BenchSuite:
        for kind, names in (
            ("method name", [m.name for m in self.methods]),
            ("attack name", [a.name for a in self.attacks]),
            ("method label", [m.display for m in self.methods]),  # rows of the tables and the picture
            ("attack label", [a.display for a in self.attacks]),
        ):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind} {dup[0]!r} appears twice")
        if any(a.name == "plain" for a in self.attacks):
            raise ValueError("attack name 'plain' is taken by the column of plain prompts")
        return self

    def path(self, value: str) -> str:
        """``value`` as a path relative to the suite file when it names an existing file there, else as given."""
        p = Path(value).expanduser()
        if not p.is_absolute() and self.source_dir and (Path(self.source_dir) / p).exists():
            return str(Path(self.source_dir) / p)
        return value


def suite_dir() -> Path:
    """The folder of the shipped bench suites."""
    return Path(str(resources.files("t2i_unlearn.bench"))) / "suites"


def bench_suite_names() -> list[str]:
    """Names of the bench suites shipped with the package."""
    return sorted(p.stem for p in suite_dir().glob("*.yaml"))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(str(x) for x in err['loc']) or 'suite'}: {msg}"


def load_bench_suite(name_or_path: str | Path) -> BenchSuite:
    """A bench suite by shipped name or YAML path, validated; :class:`UserError` naming the first problem otherwise."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"bench suite file {path} does not exist")
    elif text in bench_suite_names():
        path = suite_dir() / f"{text}.yaml"
    else:
        raise UserError(f"unknown bench suite {text!r}; shipped: {', '.join(bench_suite_names())} (or pass a YAML file)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"bench suite {path} is not readable YAML ({type(exc).__name__})") from exc
    if not isinstance(raw, dict):
        raise UserError(f"bench suite {text} must be a YAML mapping")
    try:
        return BenchSuite.model_validate({**raw, "source_dir": str(path.resolve().parent)})
    except ValidationError as exc:
        raise UserError(f"bench suite {text} is invalid: {_first_error(exc)}") from exc
