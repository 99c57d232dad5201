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
from typer.core import TyperGroup, TyperOption

from t2i_unlearn.cli.attacks import attack_cmd
from t2i_unlearn.cli.baselines import esd_cmd, sld_cmd, uce_cmd
from t2i_unlearn.cli.bench import bench_cmd, demo
from t2i_unlearn.cli.darkminer import train_darkminer_cmd
from t2i_unlearn.cli.duo import data_app, export_cmd, train_duo_cmd
from t2i_unlearn.cli.eval import eval_cmd, report_app
from t2i_unlearn.cli.generate import generate
from t2i_unlearn.cli.toy import toy_app
from t2i_unlearn.errors import UserError


class TrainGroup(TyperGroup):
    """``train``: an unknown method name is a one-line user error, not a usage screen."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            from t2i_unlearn.methods import get_method

            get_method(args[0])  # raises UserError naming the known methods
        return super().resolve_command(ctx, args)


_display_type = getattr(TyperOption, "display_type_rich", None)  # typer >= 0.28; older releases print no type


def _no_type_for_flags(self: TyperOption, ctx: Any) -> str | None:
    # typer's rich help prints a type after every option, so a plain flag read "--overwrite <bool>", as if it took a value
    return None if self.is_flag and not self.count else _display_type(self, ctx)  # type: ignore[misc]


if _display_type is not None:
    TyperOption.display_type_rich = _no_type_for_flags  # type: ignore[method-assign]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Remove unsafe concepts from text-to-image diffusion models, attack and evaluate them.")
train_app = typer.Typer(cls=TrainGroup, no_args_is_help=True, help="Train an unlearning adapter.")

# The command tree, in the order ``--help`` lists it.
app.command("export")(export_cmd)
app.command("eval")(eval_cmd)
app.command("attack")(attack_cmd)
app.command("generate")(generate)
app.command("demo")(demo)
app.command("bench")(bench_cmd)
app.add_typer(toy_app, name="toy")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(report_app, name="report")
train_app.command("duo")(train_duo_cmd)
train_app.command("esd")(esd_cmd)
train_app.command("uce")(uce_cmd)
train_app.command("sld")(sld_cmd)
train_app.command("darkminer")(train_darkminer_cmd)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads of torch's operations (default: torch's own choice: OMP_NUM_THREADS, or one per core).")
    ] = None,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if threads is not None:
        _set_threads(threads)
    if not (verbose or debug):
        _quiet_libraries()


def _set_threads(threads: int) -> None:
    # torch.set_num_threads, not OMP_NUM_THREADS: torch caps a thread count from the environment at
    # the number of cores. Only this option loads torch before the command has checked its arguments.
    import torch

    torch.set_num_threads(threads)


def _quiet_libraries() -> None:
    # Through the environment, which diffusers, transformers and huggingface_hub read when they are
    # imported: importing them here would cost every command, --help included, seconds.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore")


def _close_progress_bars() -> None:
    """Close unfinished tqdm bars, so that an error line starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def _click_module() -> Any:
    """The click that typer runs on: typer >= 0.2x carries its own copy as ``typer._click``."""
    try:
        from typer import _click as click
    except ImportError:  # pragma: no cover - older typer on plain click
        import click
    return click


# How many times torch's OpenMP worker threads (GNU libgomp in torch's CPU wheels) spin for the next operation
# before they sleep. Measured with bench/bench_threads.py on 2 cores (docs/bench.md, "Threads"): sleeping at once
# (OMP_WAIT_POLICY=PASSIVE, this command's setting until 2026-12-02) made two threads 2.7x (ESD) and 3.0x (pair
# making) slower than one on an idle machine, as waking the threads for each of a small model's many short
# operations costs more than the operations; libgomp's own default (a long spin) made a two-thread ESD 19x slower
# than one thread beside another job, a short spin 4x. A short spin keeps the idle machine's speed; beside other
# jobs one thread per job is fastest under any policy (--threads 1 or OMP_NUM_THREADS=1).
SPIN_COUNT = "10000"


def _openmp_wait_policy() -> None:
    """A short OpenMP spin (``GOMP_SPINCOUNT``), unless the user chose a wait policy or a spin count.

    Set in the environment before torch is imported: libgomp reads it when it loads.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def main() -> None:
    """Console-script entry point."""
    _openmp_wait_policy()
    debug = "--debug" in sys.argv
    click = _click_module()
    try:
        rc = app(standalone_mode=False)
    except UserError as exc:
        _close_progress_bars()
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _close_progress_bars()
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        # usage errors: Click's own usage line and message, exit 2
        _close_progress_bars()
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt; typer's bundled click raises typer's own Abort (older typer re-exports click's)
        _close_progress_bars()
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        _close_progress_bars()
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (run with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
