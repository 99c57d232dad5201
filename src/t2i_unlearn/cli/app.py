"""The root of the ``t2i-unlearn`` command: global options, the command tree and the error handling.

Known problems (:class:`~t2i_unlearn.errors.UserError`) are printed as one line on stderr with exit
code 2; anything else is a bug and shows its traceback only with ``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from t2i_unlearn.cli.attacks import attack_cmd
from t2i_unlearn.cli.baselines import esd_cmd, sld_cmd, uce_cmd
from t2i_unlearn.cli.duo import data_app, export_cmd, train_duo_cmd
from t2i_unlearn.cli.eval import eval_cmd, report_app
from t2i_unlearn.cli.generate import generate
from t2i_unlearn.cli.toy import demo, toy_app
from t2i_unlearn.errors import UserError


class TrainGroup(TyperGroup):
    """``train``: an unknown method name is a one-line user error, not a usage screen."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            from t2i_unlearn.methods import get_method

            get_method(args[0])  # raises UserError naming the known methods
        return super().resolve_command(ctx, args)


app = typer.Typer(add_completion=False, no_args_is_help=True, help="Remove unsafe concepts from text-to-image diffusion models, attack and evaluate them.")
train_app = typer.Typer(cls=TrainGroup, no_args_is_help=True, help="Train an unlearning adapter.")

# The command tree, in the order ``--help`` lists it.
app.command("export")(export_cmd)
app.command("eval")(eval_cmd)
app.command("attack")(attack_cmd)
app.command("generate")(generate)
app.command("demo")(demo)
app.add_typer(toy_app, name="toy")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(report_app, name="report")
train_app.command("duo")(train_duo_cmd)
train_app.command("esd")(esd_cmd)
train_app.command("uce")(uce_cmd)
train_app.command("sld")(sld_cmd)

_STATE = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    _STATE["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (verbose or debug):
        _quiet_libraries()


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - both are dependencies
        pass


def main() -> None:
    """Console-script entry point."""
    debug = "--debug" in sys.argv
    try:
        rc = app(standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            sys.exit(1)
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
