"""Command flags derived from a method's config dataclass, as TRL's HfArgumentParser derives them.

Each field of the dataclass is one flag: its name gives ``--field-name`` (or ``metadata["flag"]``),
its type the flag's type, its default and ``metadata["help"]`` the help text. A flag that is not
given is ``None`` and leaves the config file's (or preset's, or the default) value in place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.core

_RICH_TAG = re.compile(r"(\[[a-z#/@][^\[]*?\])")

# The run options every training command shares (``train duo``, ``train darkminer``, the baselines).
ResumeFlag = Annotated[
    bool, typer.Option("--resume", help="Continue from the latest checkpoint in --out (a rerun of the same command does so anyway).")
]
RunOverwriteFlag = Annotated[bool, typer.Option("--overwrite", help="Start over in an --out that holds a run (or anything else).")]
ResultOverwriteFlag = Annotated[bool, typer.Option("--overwrite", help="Replace what --out holds (another result, or any folder).")]
TrainDeviceFlag = Annotated[str | None, typer.Option(help="cpu to force CPU (default: GPU when available).")]


def config_flags(config_class: type, panel: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: give a Typer command one option per field of ``config_class``, listed under ``panel`` in its help.

    The decorated function declares the command's own options and a last parameter ``overrides``;
    it receives the options that were given as ``overrides`` (field name -> value), ready for
    ``load_config(config, overrides)``. Typer reads the signature of the returned function, in which
    ``overrides`` is replaced by the fields' options.
    """
    hints = typing.get_type_hints(config_class)
    options = [_option(f, hints[f.name], panel) for f in dataclasses.fields(config_class)]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "overrides"]
        clash = {p.name for p in own} & {o.name for o in options}
        if "overrides" not in signature.parameters or clash:
            raise TypeError(f"{command.__name__} needs an 'overrides' parameter and no option named like a {config_class.__name__} field ({clash})")

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {o.name: kwargs.pop(o.name) for o in options}
            return command(**kwargs, overrides={name: value for name, value in given.items() if value is not None and value != []})

        params = [*own, *options]
        run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


def _option(field: dataclasses.Field, hint: Any, panel: str) -> inspect.Parameter:
    """The keyword parameter (``Annotated[type | None, typer.Option(...)] = None``) of one config field."""
    help_text = field.metadata.get("help")
    if not help_text:
        raise TypeError(f"config field {field.name} has no metadata['help']")
    kind = _without_none(hint)
    flag = field.metadata.get("flag", "--" + field.name.replace("_", "-"))
    if kind is bool and "/" not in flag:
        flag = f"{flag}/--no-{flag[2:]}"
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]
    shown = _shown(default, flag)
    if shown:
        help_text = f"{help_text} [default: {shown}]"
    if typer.core.HAS_RICH:  # rich would read "[flow_u_min, flow_u_max]" as a markup tag and drop it
        help_text = _RICH_TAG.sub(r"\\\1", help_text)
    option = typer.Option(flag, help=help_text, show_default=False, rich_help_panel=panel)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option])


def _without_none(hint: Any) -> Any:
    """``float`` for ``float | None``; the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(hint) and len(args) == 1 else hint


def _shown(default: Any, flag: str) -> str:
    """The default as the help shows it: the flag that is on for booleans, nothing for None."""
    if default is None:
        return ""
    if isinstance(default, bool):
        on, off = flag.split("/")
        return (on if default else off).lstrip("-")
    if isinstance(default, list):
        return ", ".join(map(str, default))
    return str(default)


def key_values(values: list[str] | None, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` options (``--prompt-file SET=PATH`` ...) as a dict; :class:`UserError` naming ``flag`` otherwise."""
    from t2i_unlearn.errors import UserError

    out = {}
    for v in values or []:
        if "=" not in v:
            raise UserError(f"{flag} takes NAME=VALUE, got {v!r}")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out
