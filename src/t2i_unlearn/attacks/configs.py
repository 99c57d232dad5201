"""Settings of the attacks and of their budget: plain dataclasses, checked when made, no torch.

Each attack's config holds the paper's defaults (every field commented); ``__post_init__`` refuses
values that would crash, hang or silently do nothing (a population of 0, a check every 0 steps, 0
tokens), so ``t2i-unlearn attack`` answers a bad ``--set`` in one line before loading a model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from t2i_unlearn.errors import UserError

# A CLIP text encoder reads 77 positions: BOS, at most 75 tokens, EOS.
MAX_PROMPT_TOKENS = 75


def _at_least(cfg: Any, minimum: int, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {getattr(cfg, name)}")


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be positive, got {value}")


def _non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be 0 or more, got {value}")


def _rate(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")


def _tokens(cfg: Any, name: str = "num_tokens") -> None:
    value = getattr(cfg, name)
    if not 1 <= value <= MAX_PROMPT_TOKENS:
        raise ValueError(f"{name} must be between 1 and {MAX_PROMPT_TOKENS} (what a CLIP prompt holds), got {value}")


@dataclass(frozen=True)
class AttackBudget:
    """Caps on one attack run; ``None`` leaves a cap to the attack's config.

    ``iterations``: optimisation steps of each search (GA generations, textual-inversion steps, token
    updates per prompt). ``queries``: model evaluations in the whole run (text-encoder calls for
    Ring-A-Bell, UNet calls and judge checks for the others). ``time_s``: wall-clock seconds of the
    whole search (the final success-rate measurement is not counted).
    """

    iterations: int | None = None
    queries: int | None = None
    time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "queries", "time_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"budget {name.replace('_s', '')} must be positive, got {value}")


@dataclass
class RingABellConfig:
    """Ring-A-Bell settings; defaults are the paper's nudity settings unless noted."""

    eta: float = 3.0  # strength of the concept direction (paper: ~3 nudity, 5-5.5 violence)
    num_tokens: int = 16  # K, tokens per hard prompt (paper: 16, 38 or 77)
    population: int = 200  # GA population size (paper: 200)
    generations: int = 3000  # GA generations per source prompt (paper: 3000); the budget's iterations override it
    mutation_rate: float = 0.25  # chance that each token of a child is replaced by a random one (paper: 0.25)
    crossover_rate: float = 0.5  # chance that a child is a crossover of two parents rather than a copy (paper: 0.5)
    elite: int = 10  # best individuals copied unchanged to the next generation (ours)
    ban_concept_words: bool = True  # leave the words that name the concept out of the search vocabulary (ours)
    banned_words: list[str] = field(default_factory=list)  # more words to leave out
    batch_size: int = 200  # prompts per text-encoder call

    def __post_init__(self) -> None:
        _tokens(self)
        _at_least(self, 2, "population")
        _at_least(self, 1, "generations", "batch_size")
        _at_least(self, 0, "elite")
        if self.elite >= self.population:
            raise ValueError(f"elite ({self.elite}) must be smaller than population ({self.population})")
        _rate(self, "mutation_rate", "crossover_rate")
        if not math.isfinite(self.eta):
            raise ValueError(f"eta must be a finite number, got {self.eta}")


@dataclass
class ConceptInversionConfig:
    """Concept Inversion settings (paper values where it gives them)."""

    token: str = "<concept>"  # the new token; must not be in the tokenizer's vocabulary
    init_word: str = "object"  # its embedding starts as this word's (first token's) embedding
    num_images: int = 25  # concept images drawn by the base model (paper: about 25)
    steps: int = 3000  # optimisation steps (paper: a few thousand); the budget's iterations override it
    lr: float = 5e-3  # Adam learning rate (paper: 5e-3)
    batch_size: int = 4  # images per step (paper: 4)
    train_templates: list[str] = field(default_factory=lambda: ["a photo of {}", "a picture of {}", "an image of {}", "a drawing of {}", "{}"])
    attack_templates: list[str] = field(default_factory=lambda: ["a photo of {}", "a picture of {}", "an image of {}", "a drawing of {}", "{}"])
    images_per_template: int = 2  # attack prompts per template (each with its own seed)

    def __post_init__(self) -> None:
        _at_least(self, 1, "num_images", "steps", "batch_size", "images_per_template")
        _positive(self, "lr")
        if not self.token.strip() or any(c.isspace() for c in self.token):
            raise ValueError(f"token must be one word without spaces, got {self.token!r}")
        if not self.init_word.strip():
            raise ValueError("init_word must not be empty")
        for name in ("train_templates", "attack_templates"):
            templates = getattr(self, name)
            if not templates:
                raise ValueError(f"{name} must list at least one template")
            for template in templates:
                if template.count("{}") != 1:
                    raise ValueError(f"template {template!r} in {name} must contain exactly one {{}}")


@dataclass
class UnlearnDiffConfig:
    """UnlearnDiffAtk settings (paper values unless noted; the paper's code is the reference for the schedule)."""

    num_tokens: int = 5  # k prefix tokens (paper: 5)
    lr: float = 0.01  # Adam learning rate on the relaxed one-hot (paper: 0.01)
    weight_decay: float = 0.1  # Adam's L2 term on theta (paper's config: 0.1)
    timesteps: int = 50  # n timesteps of the schedule, t_i = T/2n + i*T/n (paper: 50)
    steps_per_timestep: int = 40  # Adam steps at each timestep (paper: 40)
    order: str = "ascending"  # order the timesteps are visited in (paper: ascending); or descending, random
    iterations: int = 2000  # steps per prompt in all (paper: up to 50 x 40); the budget's iterations override it
    discretise: str = "sample"  # forward pass token: drawn from theta (paper) or its argmax (ours, earlier versions)
    batch_size: int = 1  # noise draws per step (paper: 1)
    check_every: int | None = None  # judge the argmax prompt every this many steps; unset: after each timestep's block (paper)
    ban_concept_words: bool = True  # leave words naming the concept out of the vocabulary (ours)
    banned_words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.discretise not in UNLEARNDIFF_DISCRETISE:
            raise ValueError(f"discretise must be one of {', '.join(UNLEARNDIFF_DISCRETISE)}, got {self.discretise!r}")
        if self.order not in UNLEARNDIFF_ORDERS:
            raise ValueError(f"order must be one of {', '.join(UNLEARNDIFF_ORDERS)}, got {self.order!r}")
        _tokens(self)
        _at_least(self, 1, "timesteps", "steps_per_timestep", "iterations", "batch_size")
        if self.check_every is not None and self.check_every < 1:
            raise ValueError(f"check_every must be at least 1 (leave it unset to judge after each timestep's block), got {self.check_every}")
        _positive(self, "lr")
        _non_negative(self, "weight_decay")


UNLEARNDIFF_DISCRETISE = ("sample", "argmax")
UNLEARNDIFF_ORDERS = ("ascending", "descending", "random")


@dataclass
class P4DConfig:
    """P4D-N settings (paper values where noted; others are ours)."""

    num_tokens: int = 16  # N optimised tokens (paper: 16 for P4D-N)
    lr: float = 0.1  # AdamW learning rate on the soft embeddings (paper: 0.1, as PEZ)
    weight_decay: float = 0.1  # AdamW weight decay (paper: 0.1, as PEZ)
    iterations: int = 3000  # steps per prompt (paper: 3000, unverified); the budget's iterations override it
    batch_size: int = 1  # noise draws per step
    check_every: int = 50  # judge the hard prompt every this many steps; stop early when it fires
    ban_concept_words: bool = True  # leave words naming the concept out of the vocabulary (ours)
    banned_words: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _tokens(self)
        _at_least(self, 1, "iterations", "batch_size", "check_every")
        _positive(self, "lr")
        _non_negative(self, "weight_decay")


CONFIGS: dict[str, type] = {
    "ring_a_bell": RingABellConfig,
    "concept_inversion": ConceptInversionConfig,
    "unlearndiff": UnlearnDiffConfig,
    "p4d": P4DConfig,
}


def _convert(key: str, value: str, annotation: str) -> Any:
    """A ``--set`` string as the field's type (from its annotation: ``int``, ``float | None``, ``list[str]`` ...)."""
    kind = annotation.split("|")[0].strip().split("[")[0]
    if value.strip().lower() in ("none", "null") and "None" in annotation:
        return None
    try:
        if kind == "bool":
            lowered = value.strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "list":
            return [v.strip() for v in value.split("|") if v.strip()]
    except ValueError:
        wanted = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(kind, f"a {kind}")
        raise UserError(f"setting {key} must be {wanted}, got {value!r}") from None
    return value


def config_from(config_class: type, overrides: dict[str, Any] | None) -> Any:
    """``config_class(**overrides)`` with one-line errors for unknown keys and bad values (strings from the CLI are converted)."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in fields:
            raise UserError(f"unknown setting {key!r} for {config_class.__name__}; known: {', '.join(fields)}")
        annotation = fields[key].type if isinstance(fields[key].type, str) else getattr(fields[key].type, "__name__", "str")
        if isinstance(value, str) and not annotation.startswith("str"):
            value = _convert(key, value, annotation)
        values[key] = value
    try:
        return config_class(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad {config_class.__name__} settings: {exc}") from exc


def attack_config(name: str, settings: dict[str, Any] | None) -> Any:
    """The config of attack ``name`` with ``settings`` applied, checked; :class:`UserError` (one line) if bad."""
    key = name.replace("-", "_").lower()
    if key not in CONFIGS:
        raise UserError(f"unknown attack {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return config_from(CONFIGS[key], settings)
