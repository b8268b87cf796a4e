"""Atomic file writes: a reader never sees a half-written output under its final name."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    A failure (an exception, a kill, a full disk) leaves `path` as it was: absent or the previous
    complete file. OSErrors come out as OutputError naming `path`.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any other file
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OutputError(f"{path}: could not write ({exc.strerror or exc}); nothing was written under this name") from exc
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def torch_save(obj: Any, path: str | Path) -> None:
    import torch  # here, not at the top: aggregate and report jobs never pay for importing torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
