"""`edgereg run --mqtt` against a REAL broker (Debian's mosquitto) and a REAL paho subscriber.

Every frame's JSON line must arrive as an MQTT message, in order, also across a restart
of the broker in the middle of a run and across a restart of ``edgereg run`` (spool). A
frame may arrive twice only where QoS 1 allows it, and every such frame must be one the
protocol explains: a message edgereg had in flight when the connection broke (it names
those frames on stderr and sends them again), or one the broker itself delivered again
(the DUP flag the subscriber sees). Nothing is deduplicated by frame index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import pytest
from broker import Mosquitto, SilentServer, Subscriber, free_port, mosquitto_binary
from models import make_tflite
from test_run import dot_frame, json_lines, write_video

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
for _k in [k for k in ENV if k.startswith("EDGEREG_MQTT_")]:
    del ENV[_k]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    mosquitto_binary()  # skip (or fail in CI) before building anything
    d = tmp_path_factory.mktemp("mqtt")
    model = make_tflite(d, "point", arch="centroid")
    # 240 frames at 30 fps: an 8 s real-time run with --latest, like a camera
    long = write_video(d / "long.avi", [dot_frame(i % 12) for i in range(240)], fps=30)
    short = write_video(d / "short.avi", [dot_frame(i) for i in range(12)], fps=30)
    return d, model, long, short


def edgereg(*args, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgereg", *map(str, args)],
        cwd=cwd,
        env={**ENV, **kw.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run(*args, cwd: Path, timeout: float = 120, env: dict | None = None):
    p = edgereg(*args, cwd=cwd, env=env or {})
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def auth_file(path: Path, user: str, password: str, fmt: str = "ini", **tls: str) -> Path:
    if fmt == "json":
        path.write_text(json.dumps({"username": user, "password": password, **tls}))
    else:
        extra = "".join(f"{k} = {v}\n" for k, v in tls.items())
        path.write_text(f"[mqtt]\nusername = {user}\npassword = {password}\n{extra}")
    path.chmod(0o600)
    return path


def results(messages) -> list[dict]:
    return [json.loads(m.payload) for m in messages if not m.topic.endswith("/status")]


def resent_frames(stderr: str) -> set[int]:
    """Frames edgereg says it had in flight when a connection broke (sent again)."""
    out: set[int] = set()
    for line in stderr.splitlines():
        if "were in flight" in line:
            listed = line.split("frames ", 1)[1].split(" were in flight")[0]
            out |= {int(x) for x in listed.replace(" and", ",").split(",") if x.strip().isdigit()}
    return out


def test_every_result_arrives_across_a_broker_restart(assets, tmp_path):
    d, model, long, _ = assets
    broker = Mosquitto(tmp_path / "broker", users={"cam": "s3cret"}).start()
    sub = Subscriber(broker.port, "edgereg/#", auth=("cam", "s3cret"))
    auth = auth_file(tmp_path / "auth.ini", "cam", "s3cret")
    jsonl = tmp_path / "out.jsonl"
    proc = edgereg(
        "run", model, "--source", long, "--latest", "--json", jsonl, "--no-status",
        "--mqtt", f"mqtt://127.0.0.1:{broker.port}/edgereg", "--device-id", "cam1",
        "--mqtt-auth", auth, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_lines(jsonl, 40, proc)
        broker.stop()  # the broker goes away in the middle of the run ...
        n_down = len(json_lines(jsonl.read_text()))
        time.sleep(1.5)
        n_up = len(json_lines(jsonl.read_text()))
        broker.start()  # ... and comes back (same port, its saved sessions)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert n_up > n_down + 10, "the frame loop waited for the broker"
    lines = json_lines(jsonl.read_text())
    assert sub.wait_for(lambda m: {r["frame"] for r in results(m)} >= {r["frame"] for r in lines})
    time.sleep(0.5)  # anything arriving late (a duplicate) arrives now
    sub.close()
    broker.stop()

    got = results(sub.messages)
    frames = [r["frame"] for r in got]
    # every JSON line arrived, with the same content plus the device id, on the device topic
    by_frame = {r["frame"]: r for r in got}
    assert set(by_frame) == {r["frame"] for r in lines}
    for line in lines:
        assert by_frame[line["frame"]] == {**line, "device": "cam1"}
    assert {m.topic for m in sub.messages} == {"edgereg/cam1", "edgereg/cam1/status"}
    # in order: the first arrival of each frame follows the run's order
    first = list(dict.fromkeys(frames))
    assert first == sorted(first)
    # duplicates only where QoS 1 allows them, each one explained
    twice = {f for f, n in Counter(frames).items() if n > 1}
    resent = resent_frames(err)
    redelivered = {
        json.loads(m.payload)["frame"] for m in sub.messages if m.dup and "/status" not in m.topic
    }
    print(f"{len(lines)} results; arrived twice: {sorted(twice)}; sent again by edgereg: "
          f"{sorted(resent)}; delivered again by the broker: {sorted(redelivered)}")  # fmt: skip
    assert twice <= resent | redelivered
    # the connection loss, the reconnection and the delivery of the backlog were reported
    assert "connection lost" in err and "connected to mqtt://127.0.0.1" in err
    assert f"{len(lines)} delivered" in err and "not delivered" not in err
    status = [m.payload.decode() for m in sub.messages if m.topic.endswith("/status")]
    assert status.count("online") >= 2 and status[-1] == "offline"


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"edgereg run ended early: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    pytest.fail("edgereg run wrote no results")


def test_spool_keeps_results_across_a_restart_of_edgereg_run(assets, tmp_path):
    d, model, _, short = assets
    port = free_port()  # nothing listens there yet: the broker is away
    spool = tmp_path / "spool"
    url = f"mqtt://127.0.0.1:{port}/plant"
    common = ["--mqtt", url, "--device-id", "line1", "--mqtt-spool", spool, "--no-status"]
    rc, out, err = run("run", model, "--source", short, "--json", "-", "--mqtt-drain", 0.5,
                       *common, cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    assert "cannot connect" in err and "12 not delivered: kept in" in err
    names = sorted(p.name for p in spool.iterdir())
    assert names == [".edgereg-mqtt-spool"] + [f"{i:016d}.json" for i in range(12)]
    first_run = json_lines(out)

    broker = Mosquitto(tmp_path / "broker").start()
    sub = Subscriber(broker.port, "plant/#")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"im{i}.png"), dot_frame(i))
    url2 = f"mqtt://127.0.0.1:{broker.port}/plant"
    rc, out, err = run("run", model, "--source", imgs, "--json", "-", *common[2:],
                       "--mqtt", url2, cwd=tmp_path)  # fmt: skip
    assert rc == 0, err
    assert "12 results left by an earlier run are delivered first" in err
    assert "15 delivered" in err
    assert sub.wait_for(lambda m: len(results(m)) >= 15)
    time.sleep(0.3)
    sub.close()
    broker.stop()
    got = results(sub.messages)
    expected = [{**r, "device": "line1"} for r in first_run + json_lines(out)]
    assert got == expected  # all of them, once each, in order
    assert sorted(p.name for p in spool.iterdir()) == [".edgereg-mqtt-spool"]


def test_spool_folder_with_other_files_is_refused(assets, tmp_path):
    d, model, _, short = assets
    spool = tmp_path / "notes"
    spool.mkdir()
    (spool / "todo.txt").write_text("mine")
    rc, out, err = run("run", model, "--source", short, "--mqtt", "mqtt://127.0.0.1:1/t",
                       "--mqtt-spool", spool, cwd=tmp_path)  # fmt: skip
    assert rc == 13 and "todo.txt" in err and "Traceback" not in err
    assert sorted(p.name for p in spool.iterdir()) == ["todo.txt"]


def test_wrong_password_is_a_clear_error(assets, tmp_path):
    d, model, _, short = assets
    broker = Mosquitto(tmp_path / "broker", users={"cam": "right"}).start()
    try:
        auth = auth_file(tmp_path / "auth.json", "cam", "N0tTh1s0ne", fmt="json")
        rc, out, err = run("run", model, "--source", short, "--loop", "--max-frames", 2000,
                           "--mqtt", f"mqtt://127.0.0.1:{broker.port}/t", "--mqtt-auth", auth,
                           "--video", tmp_path / "ann.avi", cwd=tmp_path)  # fmt: skip
    finally:
        broker.stop()
    assert rc == 14, err
    assert f"error: mqtt://127.0.0.1:{broker.port}: the broker refused the connection" in err
    assert "not authorized" in err or "bad user name or password" in err
    assert "Traceback" not in err and "N0tTh1s0ne" not in err  # never echoed
    assert sorted(p.name for p in tmp_path.iterdir() if "ann" in p.name) == []  # no .part


def test_environment_credentials_work(assets, tmp_path):
    d, model, _, short = assets
    broker = Mosquitto(tmp_path / "broker", users={"envuser": "envpass"}).start()
    sub = Subscriber(broker.port, "#", auth=("envuser", "envpass"))
    try:
        env = {"EDGEREG_MQTT_USERNAME": "envuser", "EDGEREG_MQTT_PASSWORD": "envpass"}
        rc, out, err = run("run", model, "--source", short, "--mqtt",
                           f"mqtt://127.0.0.1:{broker.port}/t", "--device-id", "d",
                           cwd=tmp_path, env=env)  # fmt: skip
        assert rc == 0, err
        assert sub.wait_for(lambda m: len(results(m)) >= 12)
    finally:
        sub.close()
        broker.stop()
    assert [r["frame"] for r in results(sub.messages)] == list(range(12))
    assert out == ""  # --mqtt is an output: no JSON on stdout unless asked


def test_silent_broker_never_stalls_the_frame_loop(assets, tmp_path):
    """A server that accepts the connection and never answers: frames flow at full speed."""
    d, model, long, _ = assets
    server = SilentServer()
    try:
        rc, out, err = run("run", model, "--source", long, "--latest", "--max-frames", 60,
                           "--json", "-", "--mqtt", f"mqtt://127.0.0.1:{server.port}/t",
                           "--mqtt-drain", 1, cwd=tmp_path)  # fmt: skip
    finally:
        server.close()
    assert rc == 0, err
    lines = json_lines(out)
    assert len(lines) == 60
    assert server.connections >= 1 and server.received[:1] == b"\x10"  # our CONNECT came
    # real-time frames 33 ms apart; waiting for the broker would cost seconds
    assert max(r["latency_ms"] for r in lines) < 1000
    assert "60 not delivered: lost (no --mqtt-spool)" in err


def _make_ca(d: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, with Debian's openssl."""
    if not shutil.which("openssl"):
        from broker import need

        need("openssl is not installed (scripts/ci-system-deps.sh installs it)")
    d.mkdir()

    def ssl_(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=edgereg test CA")  # fmt: skip
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl_("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key")}


def test_mqtts_with_the_ca_from_the_auth_file(assets, tmp_path):
    d, model, _, short = assets
    ca = _make_ca(tmp_path / "pki")
    tls = {"cafile": ca["ca.crt"], "certfile": ca["server.crt"], "keyfile": ca["server.key"]}
    broker = Mosquitto(tmp_path / "broker", users={"u": "p"}, tls=tls).start()
    sub = Subscriber(broker.port, "#", auth=("u", "p"), ca_certs=str(ca["ca.crt"]))
    try:
        # the CA path is relative to the auth file
        auth = auth_file(tmp_path / "pki" / "auth.ini", "u", "p", ca="ca.crt")
        url = f"mqtts://127.0.0.1:{broker.port}/secure"
        rc, out, err = run("run", model, "--source", short, "--mqtt", url, "--mqtt-auth", auth,
                           "--device-id", "d", cwd=tmp_path)  # fmt: skip
        assert rc == 0, err
        assert sub.wait_for(lambda m: len(results(m)) >= 12)
        # without that CA the broker's certificate does not verify: a clear error
        bare = auth_file(tmp_path / "bare.ini", "u", "p")
        rc2, _, err2 = run("run", model, "--source", short, "--loop", "--max-frames", 5000,
                           "--mqtt", url, "--mqtt-auth", bare, cwd=tmp_path)  # fmt: skip
    finally:
        sub.close()
        broker.stop()
    assert [r["frame"] for r in results(sub.messages)] == list(range(12))
    assert rc2 == 14 and "certificate does not verify" in err2 and "Traceback" not in err2


# --------------------------------------------------------------------------- configuration
def test_url_and_credential_rules(tmp_path):
    from edge_runtime.errors import NetworkError
    from edge_runtime.mqtt import device_topic, load_auth, parse_mqtt_url

    assert parse_mqtt_url("mqtt://broker.local/a/b") == (False, "broker.local", 1883, "a/b")
    assert parse_mqtt_url("mqtts://[::1]:8884/x") == (True, "::1", 8884, "x")
    assert device_topic("plant/line", "pi") == "plant/line/pi"
    assert device_topic("plant/{device}/out", "pi") == "plant/pi/out"
    for bad, words in [
        ("mqtt://user:pw@broker/t", "credentials do not belong in the URL"),
        ("http://broker/t", "mqtt://HOST"),
        ("mqtt://broker", "needs a host and a topic"),
        ("mqtt://broker/a/#", "may not contain"),
        ("mqtt://broker:99999/t", "port"),
    ]:
        with pytest.raises(NetworkError, match=words) as e:
            parse_mqtt_url(bad)
        assert "pw" not in str(e.value)

    (tmp_path / "ca.pem").write_text("x")
    ini = tmp_path / "a.ini"
    ini.write_text("[mqtt]\nusername = u\npassword = p;w%d\nca = ca.pem\n")
    a = load_auth(ini, env={"EDGEREG_MQTT_USERNAME": "env-user"})
    assert (a.username, a.password, a.ca) == ("u", "p;w%d", tmp_path / "ca.pem")
    a = load_auth(None, env={"EDGEREG_MQTT_USERNAME": "e", "EDGEREG_MQTT_PASSWORD": "f"})
    assert (a.username, a.password, a.ca) == ("e", "f", None)
    (tmp_path / "typo.json").write_text('{"username": "u", "pasword": "p"}')
    with pytest.raises(NetworkError, match="unknown key.*pasword"):
        load_auth(tmp_path / "typo.json", env={})
    (tmp_path / "nosec.ini").write_text("username = u\n")
    with pytest.raises(NetworkError, match=r"nosec.ini"):
        load_auth(tmp_path / "nosec.ini", env={})
    with pytest.raises(NetworkError, match="missing.pem"):
        load_auth(None, env={"EDGEREG_MQTT_CA": str(tmp_path / "missing.pem")})


def test_missing_paho_says_how_to_install_it(monkeypatch):
    from edge_runtime.errors import NetworkError
    from edge_runtime.mqtt import MqttOptions, MqttSink

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # makes the import fail
    with pytest.raises(NetworkError, match=r"pip install 'edgereg\[mqtt\]'"):
        MqttSink(MqttOptions(url="mqtt://127.0.0.1/t"))


def test_paho_is_imported_only_with_mqtt(assets, tmp_path):
    d, model, _, short = assets
    code = (
        "import sys, runpy; sys.argv = ['edgereg'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('edgereg', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('PAHO=' + str(any(m.startswith('paho') for m in sys.modules)), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "run", str(model), "--source", str(short), "--json", "-"],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert "PAHO=False" in out.stderr, out.stderr
