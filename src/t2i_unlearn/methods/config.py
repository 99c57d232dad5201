"""Loading a method's settings: its config dataclass's defaults, then a preset or YAML file, then overrides.

Each method keeps its settings in one dataclass (``methods/<method>_config.py``) whose fields carry
type, default and help (``field(metadata={"help": ...})``); the CLI derives its flags from them.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError

PRESETS = Path(__file__).parent / "presets"


def as_number(value: Any, integer: bool, setting: str) -> int | float:
    """``value`` as a finite float (an int where ``integer``); :class:`UserError` naming ``setting`` otherwise.

    A numeric string counts: YAML 1.1 reads ``1e-5`` (no dot) as a string. Booleans, infinities and NaN
    do not; an integral float (``20.0``) counts as an integer.
    """
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        if integer and isinstance(value, int):
            return value
        if integer and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)  # exactly, not through a float: a 20-digit seed keeps every digit
        number = float(value)
    except (ValueError, OverflowError):
        raise UserError(f"{setting} must be {'an integer' if integer else 'a number'}, got {value!r}") from None
    if not math.isfinite(number):
        raise UserError(f"{setting} must be a finite number, got {value!r}")
    if integer and number != int(number):
        raise UserError(f"{setting} must be a number with no fractional part, got {value!r}")
    return int(number) if integer else number


def config_from_dict(cls: type, values: dict[str, Any], source: str) -> Any:
    """An instance of the config dataclass ``cls`` from a mapping; unknown keys or bad values give :class:`UserError`.

    Numbers may be numeric strings (see :func:`as_number`); a single string stands for a one-item list.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in fields]  # not sorted: YAML keys may mix types (1: a, lr: b)
    if unknown:
        raise UserError(f"{source}: unknown {cls.__name__} setting {unknown[0]!r}")
    values = dict(values)
    for name, value in values.items():
        kind = str(fields[name].type)
        base = kind.split("|")[0].strip()
        if value is None:
            if "None" not in kind:
                raise UserError(f"{source}: {name} must be set")
            continue
        if base in ("float", "int"):
            values[name] = as_number(value, base == "int", f"{source}: {name}")
        elif base == "bool" and not isinstance(value, bool):
            raise UserError(f"{source}: {name} must be true or false, got {value!r}")
        elif base == "str" and not isinstance(value, str):
            raise UserError(f"{source}: {name} must be a string, got {value!r}")
        elif base.startswith("list"):
            values[name] = [value] if isinstance(value, str) else value
            if not (isinstance(values[name], list) and all(isinstance(v, str) for v in values[name])):
                raise UserError(f"{source}: {name} must be a list of strings, got {value!r}")
    config = cls(**values)
    config.validate()
    return config


def read_config_values(method: str, path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a preset (``methods/presets/<method>_<name>.yaml``) or YAML file holds, updated by ``overrides`` (None values ignored)."""
    import yaml

    values: dict[str, Any] = {}
    if path_or_preset is not None:
        path = Path(str(path_or_preset)).expanduser()
        if not path.exists():
            preset = PRESETS / f"{method}_{path_or_preset}.yaml"
            if not preset.exists():
                names = sorted(p.stem[len(method) + 1 :] for p in PRESETS.glob(f"{method}_*.yaml"))
                raise UserError(f"no {method.upper()} config file or preset {str(path_or_preset)!r}; presets: {', '.join(names) or 'none'}")
            path = preset
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"{method.upper()} config {path} is not readable YAML ({type(exc).__name__})") from exc
        if not isinstance(loaded, dict):
            raise UserError(f"{method.upper()} config {path} must be a mapping")
        values = {k: v for k, v in loaded.items() if k not in ("concept", "notes")}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return values


def load_method_config(cls: type, method: str, path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """``cls`` defaults, then a preset (``methods/presets/<method>_<name>.yaml``) or YAML file, then ``overrides`` (None values ignored)."""
    values = read_config_values(method, path_or_preset, overrides)
    return config_from_dict(cls, values, str(path_or_preset or f"{method} settings"))
