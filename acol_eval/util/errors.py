"""The one exception type the command line turns into a one-line message."""


class AcolError(Exception):
    """Bad usage or unusable input: reported as one line, exit status 2."""

    exit_code = 2
