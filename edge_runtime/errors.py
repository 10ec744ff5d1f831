"""The one-line error report of every command (edge-run, edge-receive, tsd)."""

from __future__ import annotations

import sys

EXIT_USAGE = 2


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line (an OSError names its file)."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return str(exc)


def report(prog: str, exc: BaseException) -> int:
    """Print ``prog: error: ...`` in one line -> exit code 2."""
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return EXIT_USAGE
