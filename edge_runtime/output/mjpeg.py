"""A live MJPEG page for a headless Pi: ``--sink http://127.0.0.1:8090``.

Served with the standard library's threading HTTP server (no web framework on the Pi):

- ``/``            an HTML page with the live picture, the live stats and the notice that the
                   output is synthetic media;
- ``/stream.mjpg`` multipart/x-mixed-replace JPEG frames (what browsers show in an <img>);
- ``/frame.jpg``   the newest frame alone (scripts, snapshots);
- ``/stats.json``  the pipeline's live stats.

Every frame is marked (edge_runtime.marking) and its JPEG carries the provenance (COM and
XMP segments). The render loop only encodes the newest frame and notifies; each client's
thread sends the newest frame when it can, so a slow viewer skips frames instead of slowing
the renderer.
Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edge_runtime.bundle import NOTICE
from edge_runtime.hybrid.sender import parse_address
from edge_runtime.marking.formats import insert_jpeg, jpeg_segments
from edge_runtime.marking.marker import Marker

log = logging.getLogger(__name__)

BOUNDARY = "tsdframe"
JPEG_QUALITY = 85

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TempoSync Edge: live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 2em; }}
img {{ width: 384px; height: 384px; image-rendering: auto; background: #000; }}
pre {{ font-size: 13px; }}
.notice {{ color: #fc6; }}
.row {{ display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }}
</style></head>
<body>
<h1>TempoSync Edge</h1>
<p class="notice">{notice}</p>
<div class="row">
<img id="live" src="/stream.mjpg" alt="live talking-face frames">
<pre id="stats">waiting for stats...</pre>
</div>
<script>
async function refresh() {{
  try {{
    const stats = await (await fetch("/stats.json", {{cache: "no-store"}})).json();
    let lines = [`frames ${{stats.frames ?? 0}}, dropped ${{stats.dropped ?? 0}}, ` +
                 `${{(stats.fps ?? 0).toFixed(1)}} fps`];
    if (stats.audio_to_frame_ms !== undefined)
      lines.push(`sound to frame ${{stats.audio_to_frame_ms.toFixed(0)}} ms`);
    for (const [name, s] of Object.entries(stats.stages_ms ?? {{}}))
      lines.push(`${{name}}: p50 ${{s.p50.toFixed(2)}} ms, p95 ${{s.p95.toFixed(2)}} ms`);
    document.getElementById("stats").textContent = lines.join("\\n");
  }} catch (e) {{}}
}}
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"""


class _Latest:
    """The newest JPEG and stats, with a condition clients wait on."""

    def __init__(self):
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.index = -1
        self.stats: dict = {}
        self.closed = False

    def put(self, index: int, jpeg: bytes) -> None:
        with self.cond:
            self.jpeg, self.index = jpeg, index
            self.cond.notify_all()

    def wait_newer(self, index: int, timeout: float) -> tuple[int, bytes | None]:
        with self.cond:
            self.cond.wait_for(lambda: self.index > index or self.closed, timeout)
            return self.index, self.jpeg


def _handler(latest: _Latest):
    class Handler(BaseHTTPRequestHandler):
        server_version = "TempoSyncEdge"

        def log_message(self, fmt, *args):  # access log to debug, not stderr
            log.debug("%s " + fmt, self.client_address[0], *args)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/":
                self._send(PAGE.format(notice=NOTICE).encode(), "text/html; charset=utf-8")
            elif path == "/stats.json":
                self._send(json.dumps(latest.stats).encode(), "application/json")
            elif path == "/frame.jpg":
                _, jpeg = latest.wait_newer(-1, 5.0)
                if jpeg is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                else:
                    self._send(jpeg, "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            index = -1
            try:
                while not latest.closed:
                    newer, jpeg = latest.wait_newer(index, 1.0)
                    if newer == index or jpeg is None:
                        continue
                    index = newer
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode())
                    self.wfile.write(jpeg + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the viewer went away

    return Handler


class MjpegSink:
    """Serves the frames at ``http://HOST:PORT/``; the sink spec is ``http://HOST:PORT``."""

    def __init__(self, spec: str, marker: Marker | None = None):
        self.marker = marker or Marker.unknown()
        self._segments = jpeg_segments(self.marker.fields)
        host, port = parse_address(spec.removeprefix("http://").rstrip("/"))
        self.latest = _Latest()
        self.server = ThreadingHTTPServer((host, port), _handler(self.latest))
        self.server.daemon_threads = True
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="mjpeg",
                                        daemon=True)
        self._thread.start()
        log.info("live page at http://%s:%d/", *self.address)

    def write(self, index: int, frame: np.ndarray) -> None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(self.marker(frame), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self.latest.put(index, insert_jpeg(jpeg.tobytes(), self._segments))

    def publish_stats(self, summary: dict) -> None:
        self.latest.stats = summary

    def close(self) -> None:
        with self.latest.cond:
            self.latest.closed = True
            self.latest.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
