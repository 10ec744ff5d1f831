"""systemd's notify protocol, implemented directly (one datagram per message on the socket
named by $NOTIFY_SOCKET; a leading '@' means the abstract namespace). Without that variable
(not started by systemd) every call is a no-op.

edge-run sends READY=1 once the bundle is loaded and warmed up, pets the watchdog from the
render loop (so a hung loop gets restarted), and reports its state in STATUS=.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None, clock=time.monotonic):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        self.address = ("\0" + address[1:]) if address and address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        # pet at twice the rate systemd requires, as sd_watchdog_enabled(3) recommends
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self.clock = clock
        self._last_pet = -float("inf")

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                pass  # systemd gone (shutdown): nothing to tell

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        monotonic_us = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_us}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def heartbeat(self) -> None:
        """Call from the render loop as often as you like; pets the watchdog when due."""
        if self.watchdog_s is None:
            return
        now = self.clock()
        if now - self._last_pet >= self.watchdog_s:
            self._last_pet = now
            self.send("WATCHDOG=1")
