"""Errors a user can act on: the CLI prints their message alone (no traceback) and exits non-zero."""


class DataError(ValueError):
    """Bad input data; the message names the file and the line, row or entry, and what was expected."""


class OutputError(RuntimeError):
    """An output could not be written (disk full, no permission); the message names the file.
    Nothing is left under the output's name: writes go to a temporary file renamed on success."""


class ParamsError(ValueError):
    """A params.yaml problem; the message names the file, the key path, the value and what is allowed."""


def not_utf8(exc: UnicodeDecodeError, line: int | None = None) -> str:
    """Where a decode failed, for a message that already names the file: the line (counted in what was
    being decoded unless given), the byte's value and its offset, e.g. "line 3: invalid UTF-8: byte 0xe9 at
    byte offset 41 of the file (invalid continuation byte); re-save the file as UTF-8 (it may be latin-1 or
    Windows-1252)". With `line` given, the offset is within that line."""
    data = exc.object
    where = "of the line" if line is not None else "of the file"
    if line is None:
        line = data.count(b"\n", 0, exc.start) + 1
    return (f"line {line}: invalid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} {where} "
            f"({exc.reason}); re-save the file as UTF-8 (it may be latin-1 or Windows-1252)")
