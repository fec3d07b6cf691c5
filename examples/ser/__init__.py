"""Speech emotion recognition on the labels: training, evaluation, a feature baseline.

Needs the ``ser`` extra (torch, transformers, soundfile, scipy, opensmile). Its imports go
through :func:`ser_extra`, so a missing one is a one-line error that says how to get it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

INSTALL = "pip install -c constraints.txt -e '.[ser]' (the 'ser' extra, from the clone's root)"


@contextlib.contextmanager
def ser_extra() -> Iterator[None]:
    """Import packages of the ``ser`` extra; one that is missing names the extra.

    Run as a script (``python -m examples.ser.train``) that is one line on stderr and exit
    status 1; imported from other code, a ``ModuleNotFoundError`` with the same message.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        message = f"the SER example needs {exc.name}, which is not installed; fix: {INSTALL}"
        main = getattr(sys.modules.get("__main__"), "__spec__", None)
        if main is not None and main.name.startswith(f"{__name__}."):
            raise SystemExit(f"{main.name}: error: {message}") from None
        raise ModuleNotFoundError(message, name=exc.name) from None
