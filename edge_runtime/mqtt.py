"""Results to an MQTT broker: ``edgereg run MODEL --mqtt mqtt://HOST[:PORT]/TOPIC``.

Topics: with ``--device-id D`` (default: the host name) results go to ``TOPIC/D`` (or to
``TOPIC`` with ``{device}`` replaced, when it contains that), and ``online`` / ``offline``
(retained, QoS 1) to ``TOPIC/D/status``: ``online`` on every connection, ``offline`` on a
clean stop and, as the broker's last will, when the device vanishes. The payload is the
JSON-lines record of the frame (:func:`edge_runtime.sinks.record`) plus ``"device": D``.

Delivery: the frame loop only appends the result to a queue (in memory, or one small file
per result in ``--mqtt-spool DIR``, written atomically, so what is not yet delivered
survives a restart); it never waits for the network. A sender thread, the only one that
touches the paho-mqtt client (paho's own ``loop()``, no second network thread), connects,
reconnects with backoff while the broker is away, and hands the queue's head to paho with
at most :data:`WINDOW` messages in flight; a result leaves the queue (and its spool file is
deleted) only when the broker acknowledged it (QoS 1: PUBACK; QoS 2: PUBCOMP; QoS 0: when
written). Order is kept: paho re-sends the unacknowledged messages first after a
reconnect, then newer ones follow. Past ``--mqtt-queue N`` waiting results the oldest are
dropped and counted. QoS 1 is at least once: a message in flight when the connection
broke is sent again and may arrive twice; those frames are named on stderr.

A broker that refuses the credentials (or a certificate that does not verify) is a
:class:`~edge_runtime.errors.NetworkError` (exit 14) naming the broker; an unreachable or
silent broker is retried forever while the results wait. paho-mqtt is imported only here,
only when ``--mqtt`` is used (``pip install 'edgereg[mqtt]'``).
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .errors import ClashError, NetworkError, OutputError
from .log import get_logger
from .sinks import Sink, record

__all__ = [
    "MqttAuth",
    "MqttOptions",
    "MqttSink",
    "ResultQueue",
    "load_auth",
    "parse_mqtt_url",
]

#: messages handed to paho and not yet acknowledged, at most
WINDOW = 20
#: seconds to wait for the broker's CONNACK before the attempt is given up
CONNACK_TIMEOUT = 10.0
#: reconnect delays: 0.5, 1, 2, 4, 8, 10, 10, ... seconds
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 10.0
AUTH_FIELDS = ("username", "password", "ca", "cert", "key")
ENV_PREFIX = "EDGEREG_MQTT_"
#: CONNACK reason codes that no retry will fix (paho's MQTT 5 numbering, also for 3.1.1)
_FATAL_CONNACK = {
    132: "the broker does not speak this MQTT version",
    133: "the broker rejected the client id",
    134: "bad user name or password",
    135: "not authorized",
}


_LOG = get_logger("mqtt")


def _log(msg: str, level: int = logging.WARNING) -> None:
    _LOG.log(level, f"[mqtt] {msg}")


# --------------------------------------------------------------------------- configuration
def parse_mqtt_url(url: str) -> tuple[bool, str, int, str]:
    """``mqtt[s]://HOST[:PORT]/TOPIC`` -> (tls, host, port, topic). Credentials in the URL
    are refused: the command line is visible to every user (``ps``)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise NetworkError(f"--mqtt {url!r}: write mqtt://HOST[:PORT]/TOPIC or mqtts://...")
    if parts.username or parts.password:
        raise NetworkError(
            "--mqtt: credentials do not belong in the URL (every user can read a command "
            "line); give them in --mqtt-auth FILE or EDGEREG_MQTT_USERNAME and "
            "EDGEREG_MQTT_PASSWORD"
        )
    try:
        port = parts.port or (8883 if scheme == "mqtts" else 1883)
    except ValueError:
        raise NetworkError(f"--mqtt {url!r}: the port is not a number from 1 to 65535") from None
    host, topic = parts.hostname or "", parts.path.strip("/")
    if not host or not topic:
        raise NetworkError(f"--mqtt {url!r}: needs a host and a topic: mqtt://HOST/TOPIC")
    if any(c in topic for c in "+#\0") or "#" in url or parts.query:
        raise NetworkError(f"--mqtt {url!r}: a topic to publish to may not contain + or #")
    return scheme == "mqtts", host, port, topic


def device_topic(topic: str, device: str) -> str:
    """``TOPIC/DEVICE``, or TOPIC with ``{device}`` replaced."""
    return topic.replace("{device}", device) if "{device}" in topic else f"{topic}/{device}"


def default_device_id() -> str:
    """The host name, made safe for a topic level."""
    return re.sub(r"[/+#\s]", "-", socket.gethostname()) or "edgereg"


@dataclass
class MqttAuth:
    """Credentials and TLS files (never from the command line)."""

    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def has_tls_files(self) -> bool:
        return any((self.ca, self.cert, self.key))


def load_auth(path: str | Path | None, env: Mapping[str, str] = os.environ) -> MqttAuth:
    """``EDGEREG_MQTT_USERNAME/PASSWORD/CA/CERT/KEY``, overridden by ``path`` (an INI file
    with an ``[mqtt]`` section, or a JSON object) with the same keys; TLS file paths in
    the file are relative to it."""
    values: dict[str, Any] = {k: env.get(ENV_PREFIX + k.upper()) or None for k in AUTH_FIELDS}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        values.update({k: v for k, v in _read_auth_file(p).items() if v not in (None, "")})
        base = p.parent
        _warn_if_readable_by_others(p)
    files = {k: _tls_file(values[k], base, k) for k in ("ca", "cert", "key")}
    auth = MqttAuth(values["username"], values["password"], **files)
    if auth.password and not auth.username:
        raise NetworkError("MQTT credentials: a password without a username")
    if auth.key and not auth.cert:
        raise NetworkError("MQTT credentials: a client key without its certificate (cert)")
    return auth


def _read_auth_file(p: Path) -> dict[str, Any]:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise NetworkError(f"--mqtt-auth {p}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise NetworkError(f"--mqtt-auth {p}: not a UTF-8 text file") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise NetworkError(f"--mqtt-auth {p}: bad JSON ({e})") from None
        if not isinstance(data, dict):
            raise NetworkError(f"--mqtt-auth {p}: the JSON must be an object")
    else:
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read_string(text, source=str(p))
        except configparser.Error as e:
            raise NetworkError(f"--mqtt-auth {p}: {' '.join(str(e).split())}") from None
        if not cp.has_section("mqtt"):
            raise NetworkError(f"--mqtt-auth {p}: no [mqtt] section (or give a JSON object)")
        data = dict(cp.items("mqtt"))
    unknown = sorted(set(data) - set(AUTH_FIELDS))
    if unknown:
        raise NetworkError(
            f"--mqtt-auth {p}: unknown key(s) {', '.join(unknown)}; the keys are "
            f"{', '.join(AUTH_FIELDS)}"
        )
    return {k: (None if v is None else str(v)) for k, v in data.items()}


def _tls_file(value: str | None, base: Path, what: str) -> Path | None:
    if not value:
        return None
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file() or not os.access(p, os.R_OK):
        raise NetworkError(f"MQTT TLS {what} file {p}: not found or not readable")
    return p


def _warn_if_readable_by_others(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.stat().st_mode & 0o077:
            _log(f"warning: {p} can be read by other users; chmod 600 it")


@dataclass
class MqttOptions:
    """What ``--mqtt*`` and ``--device-id`` say."""

    url: str
    qos: int = 1
    device_id: str | None = None
    auth_file: str | Path | None = None
    queue: int = 10_000
    spool: str | Path | None = None
    drain_s: float = 10.0
    keepalive: int = 30
    #: where EDGEREG_MQTT_* are read (the process environment by default)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


# --------------------------------------------------------------------------- the queue
_SPOOL_MARK = ".edgereg-mqtt-spool"
_SPOOL_NAME = re.compile(r"^(\d{16})\.json$")
_SPOOL_TEMP = re.compile(r"^\.\d{16}\.json\.tmp$")


class ResultQueue:
    """Results waiting for the broker, oldest first, at most ``bound`` of them (those in
    flight included); past the bound the oldest waiting one is dropped and counted.

    With ``spool``, each result is also a file ``<seq>.json`` in that folder (written to
    a hidden temp name and renamed, so a crash never leaves half a result under a
    result's name), deleted once delivered; a new queue on the same folder starts with
    what an earlier run left. One run at a time may use a spool (a lock on the marker
    file); a folder with other files in it is refused.
    """

    def __init__(self, bound: int, spool: str | Path | None = None) -> None:
        self.bound = max(1, int(bound))
        self.spool = Path(spool) if spool is not None else None
        self._lock = threading.Lock()
        self._waiting: deque[tuple[int, bytes | None]] = deque()
        self._seq = 0
        self.in_flight = 0
        self.dropped = 0
        self.damaged = 0
        self.from_earlier_run = 0
        self._lock_fd: int | None = None
        if self.spool is not None:
            self._open_spool(self.spool)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting) + self.in_flight

    # ------------------------------------------------------------------ producer
    def put(self, payload: bytes) -> None:
        """Append one result (the frame loop's thread: never waits for the network)."""
        with self._lock:
            seq = self._seq
            self._seq += 1
        item: tuple[int, bytes | None] = (seq, payload)
        if self.spool is not None:
            self._write(seq, payload)
            item = (seq, None)  # read back from disk when sent: memory stays small
        with self._lock:
            self._waiting.append(item)
            victims = self._trim()
        for s in victims:
            self._unlink(s)

    def _trim(self) -> list[int]:
        victims = []
        while self._waiting and len(self._waiting) + self.in_flight > self.bound:
            victims.append(self._waiting.popleft()[0])
            self.dropped += 1
        return victims

    # ------------------------------------------------------------------ consumer
    def take(self) -> tuple[int, bytes] | None:
        """The oldest waiting result, now counted as in flight (None: nothing waits)."""
        while True:
            with self._lock:
                if not self._waiting:
                    return None
                seq, payload = self._waiting.popleft()
                self.in_flight += 1
            if payload is None:
                payload = self._read(seq)
            if payload is not None:
                return seq, payload
            self.done(seq)  # a damaged spool file: counted, removed, skipped

    def done(self, seq: int) -> None:
        """The broker has it: forget it (and delete its spool file)."""
        with self._lock:
            self.in_flight -= 1
        self._unlink(seq)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ the spool
    def _path(self, seq: int) -> Path:
        assert self.spool is not None
        return self.spool / f"{seq:016d}.json"

    def _open_spool(self, d: Path) -> None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            names = os.listdir(d)
        except OSError as e:
            raise OutputError(f"--mqtt-spool {d}: cannot use it ({e.strerror or e})") from None
        foreign = [n for n in names if n != _SPOOL_MARK and not _SPOOL_NAME.match(n)]
        foreign = [n for n in foreign if not _SPOOL_TEMP.match(n)]
        if foreign or (names and _SPOOL_MARK not in names):
            what = ", ".join(sorted(foreign)[:3]) or "and no spool marker"
            raise ClashError(
                f"--mqtt-spool {d}: this folder holds other files ({what}); give an empty "
                "or new folder that only edgereg's MQTT queue uses"
            )
        mark = d / _SPOOL_MARK
        self._lock_fd = os.open(mark, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.close()
            raise ClashError(f"--mqtt-spool {d}: another edgereg run is using it") from None
        for n in names:
            if _SPOOL_TEMP.match(n):  # a result cut by a crash before its rename: ours
                (d / n).unlink(missing_ok=True)
        seqs = sorted(int(m.group(1)) for n in names if (m := _SPOOL_NAME.match(n)))
        self._waiting.extend((s, None) for s in seqs)
        self.from_earlier_run = len(seqs)
        self._seq = seqs[-1] + 1 if seqs else 0
        for s in self._trim():
            self._unlink(s)

    def _write(self, seq: int, payload: bytes) -> None:
        final = self._path(seq)
        tmp = final.with_name(f".{final.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
            os.replace(tmp, final)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(
                f"--mqtt-spool {self.spool}: cannot write ({e.strerror or e}); the results "
                "queued so far are kept"
            ) from None

    def _read(self, seq: int) -> bytes | None:
        try:
            data = self._path(seq).read_bytes()
            json.loads(data)
            return data
        except (OSError, ValueError):
            self.damaged += 1
            _log(f"spool file {self._path(seq).name} is unreadable or cut (a power loss?): skipped")
            return None

    def _unlink(self, seq: int) -> None:
        if self.spool is not None:
            with contextlib.suppress(OSError):
                self._path(seq).unlink()


# --------------------------------------------------------------------------- the sink
def _import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise NetworkError(
            "--mqtt needs the paho-mqtt package, which is not installed: "
            "pip install 'edgereg[mqtt]'"
        ) from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise NetworkError(
            "--mqtt needs paho-mqtt 2.0 or newer (an older one is installed): "
            "pip install -U 'edgereg[mqtt]'"
        )
    return mqtt


def _check_device_id(device: str) -> str:
    if not device or any(c in device for c in "/+#\0") or device != device.strip():
        raise NetworkError(
            f"--device-id {device!r}: use a name without '/', '+', '#' or surrounding "
            "spaces (it is one level of an MQTT topic)"
        )
    return device


_FRAME_RE = re.compile(rb'^\{"frame":(\d+)')


class MqttSink(Sink):
    """Every result to an MQTT broker (see the module docstring)."""

    label = "mqtt"

    def __init__(self, options: MqttOptions) -> None:
        mqtt = _import_paho()
        self.options = options
        self.qos = int(options.qos)
        self.tls, self.host, self.port, topic = parse_mqtt_url(options.url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.where = f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"
        self.device = _check_device_id(options.device_id or default_device_id())
        self.topic = device_topic(topic, self.device)
        self.status_topic = f"{self.topic}/status"
        self.auth = load_auth(options.auth_file, options.env)
        self._check_transport()
        self.queue = ResultQueue(options.queue, options.spool)
        try:
            self._client = self._make_client(mqtt)
        except BaseException:
            self.queue.close()
            raise
        self._success = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        self.delivered = 0
        self.resent: list[int] = []  # frames in flight when a connection broke
        self.lost_in_flight = 0  # QoS 0 messages lost with a connection
        self._inflight: dict[int, tuple[int, int | None]] = {}  # mid -> (seq, frame)
        self._acks: deque[int] = deque()
        self._connected = False
        self._open = False  # a socket exists (connecting or connected)
        self._opened_at = 0.0
        self._next_attempt = 0.0
        self._attempt = 0
        self._down_since: float | None = None
        self._fatal: NetworkError | None = None
        self._hurry = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        if self.queue.from_earlier_run:
            _log(
                f"{self.queue.spool}: {self.queue.from_earlier_run} results left by an earlier "
                "run are delivered first"
            )
        self._thread = threading.Thread(target=self._run, name="edgereg-mqtt", daemon=True)
        self._thread.start()

    def _check_transport(self) -> None:
        if self.auth.has_tls_files and not self.tls:
            raise NetworkError(
                f"--mqtt {self.where}: TLS files (ca/cert/key) are given but the URL is "
                "mqtt://; use mqtts:// for TLS"
            )
        if (
            self.auth.password
            and not self.tls
            and self.host not in ("127.0.0.1", "::1", "localhost")
        ):
            _log(f"warning: the password travels to {self.where} in clear text; use mqtts://")

    def _make_client(self, mqtt: Any) -> Any:
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edgereg-{self.device}-{os.getpid()}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = 5.0
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(0)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if self.auth.username:
            client.username_pw_set(self.auth.username, self.auth.password)
        if self.tls:
            a = self.auth
            try:
                client.tls_set(
                    ca_certs=str(a.ca) if a.ca else None,
                    certfile=str(a.cert) if a.cert else None,
                    keyfile=str(a.key) if a.key else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (ssl.SSLError, OSError, ValueError) as e:
                files = ", ".join(str(f) for f in (a.ca, a.cert, a.key) if f)
                raise NetworkError(f"{self.where}: bad TLS files ({files}): {e}") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # ------------------------------------------------------------------ frame loop side
    def write(
        self, frame: Any, result: Any, latency_ms: float, image: np.ndarray | None = None
    ) -> None:
        if self._fatal is not None:
            raise self._fatal
        rec = record(frame, result, latency_ms, self.raw)
        rec["device"] = self.device
        self.queue.put(json.dumps(rec, separators=(",", ":"), allow_nan=False).encode())
        self._wake.set()

    def close(self) -> None:
        """Wait up to ``drain_s`` for the queue to empty, then say offline and disconnect."""
        self._drain()
        self._shutdown()
        if self._fatal is not None:
            self.state = "failed"
            raise self._fatal
        self.state = "complete" if len(self.queue) == 0 else "abandoned"

    def abort(self) -> None:
        self._shutdown()
        self.state = "abandoned"

    def interrupt(self) -> None:
        self._hurry = True

    def _drain(self) -> None:
        waiting = len(self.queue)
        if not waiting or self._hurry or self._fatal is not None:
            return
        limit = self.options.drain_s
        _log(
            f"delivering {waiting} queued results (up to {limit:g} s; Ctrl-C to stop waiting)",
            logging.INFO,
        )
        deadline = time.monotonic() + limit
        while len(self.queue) and self._fatal is None and not self._hurry:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)

    def _shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0 if self._hurry else self._client.connect_timeout + 3)
        self.queue.close()

    def report(self) -> str:
        parts = [f"{self.delivered} delivered"]
        q = self.queue
        if q.dropped:
            parts.append(f"{q.dropped} dropped (more than --mqtt-queue {q.bound} waiting)")
        left = len(q)
        if left:
            where = f"kept in {q.spool} for the next run" if q.spool else "lost (no --mqtt-spool)"
            parts.append(f"{left} not delivered: {where}")
        if self.lost_in_flight:
            parts.append(f"{self.lost_in_flight} lost with a connection (QoS 0)")
        if self.resent:
            parts.append(
                f"{len(self.resent)} sent again after a lost connection (QoS 1 may deliver "
                f"these twice: frames {_frames(self.resent)})"
            )
        if q.damaged:
            parts.append(f"{q.damaged} damaged spool files skipped")
        return f"mqtt {self.where}/{self.topic}: " + ", ".join(parts)

    # ------------------------------------------------------------------ sender thread
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
            self._goodbye()
        except Exception as e:  # noqa: BLE001 (a bug here must not pass silently)
            self._fatal = NetworkError(f"{self.where}: the MQTT sender stopped ({e!r})")

    def _step(self) -> None:
        now = time.monotonic()
        if self._fatal is not None or not self._open:
            if self._fatal is None and now >= self._next_attempt:
                self._try_connect()
            else:
                self._wake.wait(
                    0.1 if self._fatal else max(0.0, min(0.1, self._next_attempt - now))
                )
                self._wake.clear()
            return
        if not self._connected and now - self._opened_at > CONNACK_TIMEOUT:
            self._lost(f"no answer in {CONNACK_TIMEOUT:g} s (is it an MQTT broker?)")
            with contextlib.suppress(Exception):
                self._client.disconnect()
            return
        self._client.loop(timeout=0.02)
        self._resolve_acks()
        if self._connected:
            self._hand_out()

    def _try_connect(self) -> None:
        self._attempt += 1
        try:
            self._client.connect(self.host, self.port, keepalive=self.options.keepalive)
        except ssl.SSLCertVerificationError as e:
            self._fatal = NetworkError(
                f"{self.where}: the broker's certificate does not verify ({e.verify_message}); "
                "give the CA that signed it as 'ca' in --mqtt-auth FILE or EDGEREG_MQTT_CA"
            )
            return
        except (OSError, ssl.SSLError, ValueError) as e:
            self._lost(f"cannot connect ({getattr(e, 'strerror', None) or e})")
            return
        self._open, self._opened_at = True, time.monotonic()

    def _lost(self, why: str) -> None:
        """Log a failed attempt or a lost connection and schedule the next attempt."""
        self._open = self._connected = False
        if self._down_since is None:
            self._down_since = time.monotonic()
        delay = min(BACKOFF_INITIAL * 2 ** max(self._attempt - 1, 0), BACKOFF_MAX)
        self._next_attempt = time.monotonic() + delay
        if self._attempt <= 3 or self._attempt % 10 == 0:
            _log(
                f"{self.where}: {why}; {len(self.queue)} results wait; attempt "
                f"{self._attempt + 1} in {delay:.1f} s"
            )

    def _hand_out(self) -> None:
        while len(self._inflight) < WINDOW:
            item = self.queue.take()
            if item is None:
                return
            seq, payload = item
            m = _FRAME_RE.match(payload)
            info = self._client.publish(self.topic, payload, qos=self.qos)
            self._inflight[info.mid] = (seq, int(m.group(1)) if m else None)

    def _resolve_acks(self) -> None:
        while self._acks:
            entry = self._inflight.pop(self._acks.popleft(), None)
            if entry is not None:  # None: the status message
                self.queue.done(entry[0])
                self.delivered += 1

    def _goodbye(self) -> None:
        """A clean stop: 'offline' (retained), then DISCONNECT (so no last will)."""
        if not self._connected:
            with contextlib.suppress(Exception):
                self._client.disconnect()
            return
        info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
        deadline = time.monotonic() + (0.5 if self._hurry else 2.0)
        while not info.is_published() and self._connected and time.monotonic() < deadline:
            self._client.loop(timeout=0.02)
            self._resolve_acks()
        with contextlib.suppress(Exception):
            self._client.disconnect()
            self._client.loop(timeout=0.05)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            why = _FATAL_CONNACK.get(rc.value)
            if why is not None:
                self._fatal = NetworkError(
                    f"{self.where}: the broker refused the connection: {why}; check the "
                    "username and password (--mqtt-auth FILE, or EDGEREG_MQTT_USERNAME and "
                    "EDGEREG_MQTT_PASSWORD) and the broker's access list"
                )
            else:
                self._lost(f"the broker refused the connection ({rc})")
            return
        self._connected = True
        client.publish(self.status_topic, "online", qos=1, retain=True)
        if self._down_since is not None:
            _log(
                f"connected to {self.where} after {time.monotonic() - self._down_since:.1f} s "
                f"away; {len(self.queue)} results waiting are being delivered in order"
            )
        else:
            _log(f"connected to {self.where}, publishing to {self.topic}", logging.INFO)
        self._attempt, self._down_since = 0, None

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        was, opened = self._connected, self._open
        self._connected = self._open = False
        if self._stop.is_set() or self._fatal is not None or not opened:
            return  # stopping, refused for good, or an attempt we gave up ourselves
        if not was:
            self._lost(f"the broker closed the connection before accepting it ({rc})")
            return
        frames = sorted(f for _, f in self._inflight.values() if f is not None)
        if self.qos == 0:  # paho does not send QoS 0 messages again: they are gone
            for seq, _ in self._inflight.values():
                self.queue.done(seq)
            self.lost_in_flight += len(self._inflight)
            self._inflight.clear()
        else:
            self.resent.extend(frames)
        note = (
            f"; frames {_frames(frames)} were in flight: "
            + ("they are sent again and may arrive twice" if self.qos else "lost (QoS 0)")
            if frames
            else ""
        )
        self._attempt = 0
        self._lost(f"connection lost ({rc}){note}")

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self._acks.append(mid)


def _frames(frames: list[int], most: int = 20) -> str:
    shown = ", ".join(str(f) for f in frames[:most])
    return shown + (f" and {len(frames) - most} more" if len(frames) > most else "")
