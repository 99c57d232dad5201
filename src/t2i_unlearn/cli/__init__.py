"""The ``t2i-unlearn`` command: a thin Typer app over the Python API, one module per command group.

:mod:`~t2i_unlearn.cli.app` holds the root app, its options and the error handling, and puts the
command tree together from :mod:`.toy`, :mod:`.generate`, :mod:`.duo`, :mod:`.baselines`,
:mod:`.attacks`, :mod:`.eval` and :mod:`.bench` (none of which imports another).
"""

from t2i_unlearn.cli.app import app, main

__all__ = ["app", "main"]
