"""E2 transport: one wire-v2 FRAME (the demo bundle's fp16 latent with its HMAC) from a
sender to a receiver thread over 127.0.0.1, by the project's TCP framing
(edge_runtime.hybrid.wire.MessageReader) and by ZeroMQ (pyzmq DEALER -> ROUTER, the pattern
that would replace it). Each round sends one message and waits until the receiver thread
has it: the time is the latency a frame sees; ``extra_info`` holds the process's CPU time
per message (both ends and ZeroMQ's I/O thread). The ZeroMQ case needs pyzmq, which the
project does not depend on (``pip install pyzmq`` to run it; docs/decisions.md, "Hybrid
wire v2 on plain TCP")."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import load_bundle
from edge_runtime.hybrid.wire import Frame, MessageReader, decode, encode

KEY = b"0123456789abcdef-bench"
LATENT = load_bundle(Path(__file__).resolve().parents[2] / "bundles" / "demo")[0].latent
MESSAGE = encode(Frame(1, 0, 0, np.zeros((LATENT.channels, LATENT.size, LATENT.size),
                                         np.float16)), KEY)


class Echo:
    """A receiver thread that parses (and authenticates) each message and signals it."""

    def __init__(self, receive):
        self.receive = receive
        self.got = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            body = self.receive()
            if body is not None:
                decode(body, KEY)
                self.got.set()


def _measure(benchmark, send, echo: Echo) -> None:
    def one():
        echo.got.clear()
        send(MESSAGE)
        assert echo.got.wait(2)

    for _ in range(50):  # warm-up
        one()
    cpu, rounds = time.process_time(), 2000
    benchmark.pedantic(one, rounds=rounds, iterations=1)
    benchmark.extra_info["cpu_us_per_message"] = 1e6 * (time.process_time() - cpu) / rounds


def test_tcp_framing(benchmark):
    server = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(server.getsockname())
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn, _ = server.accept()
    conn.settimeout(0.2)
    reader = MessageReader()

    def receive():
        body = reader.next()
        if body is not None:
            return body
        try:
            reader.feed(conn.recv(1 << 16))
        except TimeoutError:
            pass
        return reader.next()

    echo = Echo(receive)
    try:
        _measure(benchmark, sender.sendall, echo)
    finally:
        echo.stop = True
        echo.thread.join(2)
        for sock in (sender, conn, server):
            sock.close()


def test_zeromq_dealer_router(benchmark):
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    router.setsockopt(zmq.RCVTIMEO, 200)
    dealer = context.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def receive():
        try:
            _, body = router.recv_multipart(copy=False)
        except zmq.Again:
            return None
        return body.bytes[4:]  # the same bytes as TCP, without the length prefix

    echo = Echo(receive)
    try:
        _measure(benchmark, dealer.send, echo)
    finally:
        echo.stop = True
        echo.thread.join(2)
        dealer.close(0)
        router.close(0)
        context.term()
