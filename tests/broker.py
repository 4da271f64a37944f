"""Real MQTT parts for tests: Debian's mosquitto broker, a paho subscriber, a silent server.

- :class:`Mosquitto` runs ``mosquitto`` on 127.0.0.1 with its own config file, password
  file and persistence folder in a test's tmp_path; ``stop()``/``start()`` restart it on
  the same port with its saved state (a persistent subscriber keeps its session).
- :class:`Subscriber` is a paho client with a persistent session (QoS 1) that records
  every message it receives, with the DUP flag the broker set.
- :class:`SilentServer` accepts TCP connections, reads what comes and never answers:
  a "broker" that hangs.

In CI (``CI=true``) a missing mosquitto fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(reason: str) -> None:
    """Fail in CI (the test must run there); skip with the reason elsewhere."""
    if IN_CI:
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if path is None or shutil.which("mosquitto_passwd") is None:
        need("Debian's mosquitto is not installed (scripts/ci-system-deps.sh installs it)")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        need("paho-mqtt is not installed (pip install 'edgereg[mqtt]')")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'}")


class Mosquitto:
    """A real broker on 127.0.0.1:port; users ``{name: password}`` (none: anonymous)."""

    def __init__(self, root: Path, users: dict[str, str] | None = None, tls: dict | None = None):
        self.binary = mosquitto_binary()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [
            # run as whoever runs the test (as root, mosquitto would switch to its own
            # user, which cannot read the test's private tmp folder)
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {root}/",
            "max_queued_messages 0",
            f"log_dest file {root / 'mosquitto.log'}",
            "log_type all",
        ]
        if users:
            pw = root / "passwords"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        for key, path in (tls or {}).items():  # cafile, certfile, keyfile
            lines.append(f"{key} {path}")
        self.conf = root / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves its state, like a service restart
            self.proc.wait(timeout=15)
        self.proc = None
        wait_port(self.port, up=False)

    def log(self) -> str:
        p = self.root / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""


@dataclass
class Message:
    topic: str
    payload: bytes
    dup: bool
    retain: bool


class Subscriber:
    """A paho subscriber with a persistent session that records every message."""

    def __init__(self, port: int, topic: str, auth: tuple[str, str] | None = None, **tls):
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.subscribed = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-subscriber-{port}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if auth:
            self.client.username_pw_set(*auth)
        if tls:
            self.client.tls_set(**tls)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(15), "the subscriber could not subscribe"

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.dup), msg.retain))

    def wait_for(self, predicate, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1, reads whatever comes, never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += data

    def close(self) -> None:
        self._stop.set()
        for c in self._conns:
            c.close()
        self.sock.close()
