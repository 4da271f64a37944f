"""Live view: ``edgereg run MODEL --serve [HOST:]PORT``.

A small HTTP server in a thread: ``/`` is a page with the annotated frames and the latest
result (refreshed by polling ``/latest.json``), ``/stream.mjpg`` the annotated frames as
MJPEG (``multipart/x-mixed-replace``, shown by any browser's ``<img>``, by VLC and by
Home Assistant's MJPEG camera), ``/latest.json`` the latest frame's JSON-lines record.

It costs the frame loop almost nothing when nobody watches: the sink keeps a reference
to the newest result, and asks for the annotated frame (``needs_image``) only while a
stream viewer is connected. JPEG encoding happens in the viewers' threads, once per new
frame whatever the number of viewers, and only for the newest frame: a slow viewer
skips frames instead of queueing them.

The standard library's ``http.server`` (``ThreadingHTTPServer``) is enough for three
read-only routes and a few viewers, and adds no dependency to the slim device install;
a web framework would bring its own server, router and templates for nothing here.
It is bound to 127.0.0.1 unless a host is given; there is no password, so only bind it
to a reachable address on a network you trust (or behind a reverse proxy with auth).
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from .errors import NetworkError
from .log import get_logger
from .sinks import Sink, record

__all__ = ["LiveViewSink", "parse_serve"]

#: stream viewers served at once (each one costs a thread; encoding is shared)
MAX_VIEWERS = 8
JPEG_QUALITY = 80
_BOUNDARY = b"edgereg-frame"


def parse_serve(address: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); host 127.0.0.1 by default."""
    s = str(address).strip()
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise NetworkError(
            f"--serve {address!r}: write PORT or HOST:PORT, e.g. 8080 or 0.0.0.0:8080"
        )
    return host, int(port)


_LOG = get_logger("serve")


def _log(msg: str) -> None:
    _LOG.info(f"[serve] {msg}")


class LiveViewSink(Sink):
    """Serves the newest annotated frame and result over HTTP (see the module docstring)."""

    label = "live view"

    def __init__(self, address: str, spec: Any = None, *, title: str = "edgereg run") -> None:
        host, port = parse_serve(address)
        self.title = title if spec is None else f"{title}: {spec.task}"
        try:
            self.server = _Server((host, port), self)
        except OSError as e:
            raise NetworkError(
                f"--serve {address}: cannot listen on {host}:{port} ({e.strerror or e}); "
                "choose another port"
            ) from None
        bound_host, bound_port = self.server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._latest: tuple[Any, Any, float] | None = None
        self._image: np.ndarray | None = None
        self._image_seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self.viewers = 0
        self.viewers_served = 0
        self.frames_sent = 0
        self.closed = False
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="edgereg-serve", daemon=True
        )
        self._thread.start()
        where = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else "the network"
        _log(f"live view at {self.url} (reachable from {where})")

    # ------------------------------------------------------------------ frame loop side
    @property
    def needs_image(self) -> bool:
        return self.viewers > 0

    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        with self._cond:
            self._latest = (frame, result, latency_ms)
            if image is not None:
                self._image = image
                self._image_seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        self._stop()
        self.state = "complete"

    def abort(self) -> None:
        self._stop()
        self.state = "abandoned"

    def _stop(self) -> None:
        if self.closed:
            return
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def report(self) -> str:
        return (
            f"live view {self.url}: {self.viewers_served} stream viewers, "
            f"{self.frames_sent} frames sent"
        )

    # ------------------------------------------------------------------ viewer side
    def latest_json(self) -> bytes | None:
        with self._cond:
            latest = self._latest
        if latest is None:
            return None
        return json.dumps(
            record(*latest, raw=self.raw), separators=(",", ":"), allow_nan=False
        ).encode()

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes] | None:
        """The newest frame as JPEG once it is newer than ``after`` (None: none came in
        ``timeout`` s, or the run ended). Each frame is encoded once for every viewer."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.closed or self._image_seq > after, timeout=timeout
            ):
                return None
            if self.closed:
                return None
            seq, image = self._image_seq, self._image
        with self._encode_lock:
            if self._jpeg[0] != seq:
                import cv2

                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self._jpeg = (seq, buf.tobytes())
            return self._jpeg

    def viewer(self, delta: int) -> bool:
        """Count a stream viewer in (+1, False when full) or out (-1)."""
        with self._cond:
            if delta > 0 and self.viewers >= MAX_VIEWERS:
                return False
            self.viewers += delta
            self.viewers_served += max(delta, 0)
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sink: LiveViewSink) -> None:
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sink = sink
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgereg"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, "text/html; charset=utf-8", _page(self.server.sink.title))
        elif path == "/latest.json":
            body = self.server.sink.latest_json()
            if body is None:
                self._send(503, "application/json", b'{"waiting":"no frame yet"}')
            else:
                self._send(200, "application/json", body)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def _stream(self) -> None:
        sink = self.server.sink
        if not sink.viewer(+1):
            self._send(503, "text/plain; charset=utf-8", b"too many viewers\n")
            return
        try:
            self.send_response(200)
            self.send_header(
                "Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY.decode()}"
            )
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(b"--" + _BOUNDARY + b"\r\n")
            last = 0
            while not sink.closed:
                got = sink.next_jpeg(last)
                if got is None:
                    continue
                last, jpeg = got
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                # the boundary right after the image: browsers show a part once it ended
                self.wfile.write(head.encode() + jpeg + b"\r\n--" + _BOUNDARY + b"\r\n")
                self.wfile.flush()
                sink.frames_sent += 1
        except OSError:
            pass  # the viewer went away (broken pipe, reset, timeout)
        finally:
            sink.viewer(-1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass  # no access log on stderr: it carries the run's own messages


def _page(title: str) -> bytes:
    return _PAGE.replace("{{TITLE}}", html.escape(title)).encode("utf-8")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
 header { padding: 8px 14px; background: #222; display: flex; flex-wrap: wrap; gap: 6px 18px;
          align-items: baseline; }
 h1 { font-size: 16px; margin: 0; }
 #state { color: #8c8; } #state.stale { color: #e86; }
 main { display: grid; grid-template-columns: minmax(0, 640px) minmax(260px, 1fr); gap: 14px;
        padding: 14px; align-items: start; }
 @media (max-width: 760px) { main { grid-template-columns: 1fr; } }
 #live { width: 100%; image-rendering: pixelated; background: #000; }
 table { border-collapse: collapse; width: 100%; }
 td { border-bottom: 1px solid #333; padding: 4px 10px; vertical-align: top; }
 td:first-child { color: #9ab; white-space: nowrap; width: 1%; }
 td:last-child { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
</style></head>
<body>
<header><h1>{{TITLE}}</h1><span>frame <b id="frame">-</b></span>
<span id="state">waiting for the first frame</span></header>
<main>
<img id="live" src="/stream.mjpg" alt="annotated frames">
<table><tbody id="result"></tbody></table>
</main>
<script>
"use strict";
// numbers are shown to 4 decimals; the exact JSON-lines value is in data-json
function fmt(v) {
  if (v === null) return "-";
  if (typeof v === "number") return String(Math.round(v * 1e4) / 1e4);
  if (Array.isArray(v)) return "[" + v.map(fmt).join(", ") + "]";
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => k + " " + fmt(x)).join(", ");
  return String(v);
}
function row(key, value) {
  const tr = document.createElement("tr");
  const k = document.createElement("td"), v = document.createElement("td");
  k.textContent = key; v.textContent = fmt(value);
  v.dataset.key = key; v.dataset.json = JSON.stringify(value);
  tr.append(k, v); return tr;
}
async function poll() {
  const state = document.getElementById("state");
  try {
    const r = await fetch("/latest.json", {cache: "no-store"});
    if (r.ok) {
      const rec = await r.json();
      document.getElementById("frame").textContent = rec.frame;
      const rows = [row("t", rec.t), row("latency_ms", rec.latency_ms)];
      if (rec.file !== null) rows.push(row("file", rec.file));
      for (const [k, v] of Object.entries(rec.result)) rows.push(row(k, v));
      document.getElementById("result").replaceChildren(...rows);
      state.textContent = "live"; state.className = "";
    }
  } catch (e) {
    state.textContent = "not reachable (the run may have ended)"; state.className = "stale";
  }
  setTimeout(poll, 250);
}
poll();
</script>
</body></html>
"""
