"""Errors a user can act on: the CLI prints their message alone (no traceback) and exits non-zero."""


class DataError(ValueError):
    """Bad input data; the message names the file and the line, row or entry, and what was expected."""


class OutputError(RuntimeError):
    """An output could not be written (disk full, no permission); the message names the file.
    Nothing is left under the output's name: writes go to a temporary file renamed on success."""


class ParamsError(ValueError):
    """A params.yaml problem; the message names the file, the key path, the value and what is allowed."""
