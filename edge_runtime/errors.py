"""The one-line error report of every command (edge-run, edge-receive, tsd)."""

from __future__ import annotations

import sys

EXIT_USAGE = 2


def report(prog: str, exc: BaseException) -> int:
    """Print ``prog: error: ...`` in one line (an OSError names its file) -> exit code 2."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        message = f"{where}{exc.strerror or exc}"
    else:
        message = str(exc)
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE
