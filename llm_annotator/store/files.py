"""Every file the library writes goes through here: whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from llm_annotator.core.errors import RunDirError


def write_atomic(path: Path, content: str | Callable[[IO[str]], None]) -> None:
    """Write ``content`` (text, or a function that writes to the file) to ``path`` through a
    temporary file of its own, fsync and a rename: readers see the old file or the whole
    new one, and two writers never share a temporary file. The temporary file is removed
    on any failure (an OSError, which becomes a one-line RunDirError, or anything else the
    writer raises, which is raised as it is), also when its removal fails in turn."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    try:  # created like any file (mode 0666 less the umask), and by this writer only
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise RunDirError(f"cannot write {path}: {exc.strerror}",
                          fix="free disk space or choose a writable --out directory") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            if isinstance(content, str):
                out.write(content)
            else:
                content(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, a serializer's TypeError, Ctrl-C: never a stray file
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RunDirError(f"cannot write {path}: {exc.strerror or exc}",
                              fix="free disk space or choose a writable --out directory") from None
        raise


__all__ = ["write_atomic"]
