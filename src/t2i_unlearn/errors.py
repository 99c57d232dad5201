"""The one exception type for problems a user can fix (bad input, missing files, wrong settings)."""


class UserError(Exception):
    """A problem with what the user asked for; the CLI prints its message on one line and exits 2."""
