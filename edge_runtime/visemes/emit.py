"""Where the viseme stream goes for other programs: JSON lines (VisemeEvent.to_json) to
stdout (``-``), a file, or UDP datagrams (``udp://HOST:PORT``, one event per datagram)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from edge_runtime.hybrid.sender import parse_address
from edge_runtime.visemes.stream import VisemeEvent


class Emitter:
    def __init__(self, spec: str):
        self._socket = self._file = None
        if spec.startswith("udp://"):
            self._address = parse_address(spec.removeprefix("udp://"))
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        elif spec == "-":
            self._file = sys.stdout
        else:
            self._file = open(spec, "w")  # noqa: SIM115 - closed in close()
        self._owns_file = self._file is not None and self._file is not sys.stdout

    def __call__(self, event: VisemeEvent) -> None:
        line = event.to_json()
        if self._socket is not None:
            try:
                self._socket.sendto(line.encode(), self._address)
            except OSError:
                pass  # nobody listening (ICMP refused): a datagram stream does not care
        else:
            self._file.write(line + "\n")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        elif self._owns_file:
            self._file.close()
        else:
            self._file.flush()


def open_emitter(spec: str | None) -> tuple[Callable[[VisemeEvent], None] | None, Callable]:
    """-> (emit function or None, close function)."""
    if not spec:
        return None, lambda: None
    emitter = Emitter(spec)
    return emitter, emitter.close
