"""``python -m t2i_unlearn.cli``: the same as the ``t2i-unlearn`` command."""

from t2i_unlearn.cli.app import main

main()
