"""Loading a method's settings: its config dataclass's defaults, then a preset or YAML file, then overrides.

Each method keeps its settings in one dataclass (``methods/<method>_config.py``) whose fields carry
type, default and help (``field(metadata={"help": ...})``); the CLI derives its flags from them.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from t2i_unlearn.errors import UserError

PRESETS = Path(__file__).parent / "presets"


def config_from_dict(cls: type, values: dict[str, Any], source: str) -> Any:
    """An instance of the config dataclass ``cls`` from a mapping; unknown keys or bad values give :class:`UserError`."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
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
        if base == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{source}: {name} must be a number, got {value!r}")
            values[name] = float(value)
        elif base == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{source}: {name} must be an integer, got {value!r}")
        elif base == "bool" and not isinstance(value, bool):
            raise UserError(f"{source}: {name} must be true or false, got {value!r}")
        elif base == "str" and not isinstance(value, str):
            raise UserError(f"{source}: {name} must be a string, got {value!r}")
        elif base.startswith("list") and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise UserError(f"{source}: {name} must be a list of strings, got {value!r}")
    config = cls(**values)
    config.validate()
    return config


def load_method_config(cls: type, method: str, path_or_preset: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """``cls`` defaults, then a preset (``methods/presets/<method>_<name>.yaml``) or YAML file, then ``overrides`` (None values ignored)."""
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
    return config_from_dict(cls, values, str(path_or_preset or f"{method} settings"))
