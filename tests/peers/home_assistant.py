"""A real Home Assistant (PyPI `homeassistant`, its MQTT integration) pointed at a broker,
for tests/homeassistant_real.rs.

Usage: home_assistant.py CONFIG_DIR HTTP_PORT BROKER_PORT

Starts Home Assistant with only what it needs (http, api, onboarding, config), onboards an
owner through the API, adds the MQTT integration through its config flow, then reads commands
from stdin, one JSON object per line, and answers each with one JSON line on stdout:

  {"op": "wait_entity", "entity_id": "lock.x", "timeout": 60}  -> {"ok": true, "state": {...}}
  {"op": "state", "entity_id": "event.x"}                      -> {"ok": true, "state": {...}}
  {"op": "service", "domain": "lock", "service": "open", "data": {...}} -> {"ok": true}
  {"op": "entities", "prefix": "lock."}                        -> {"ok": true, "ids": [...]}
  {"op": "stop"}

It never installs anything (`--skip-pip`): the test's venv has homeassistant and paho-mqtt.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def request(method, url, body=None, token=None, form=False):
    headers = {}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def die_with_parent():
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main():
    import urllib.parse  # noqa: F401  (used by request)

    config_dir, http_port, broker_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    base = f"http://127.0.0.1:{http_port}"
    with open(os.path.join(config_dir, "configuration.yaml"), "w") as f:
        f.write(
            "homeassistant:\n"
            "  name: Portier test\n"
            "  latitude: 52.5\n"
            "  longitude: 13.4\n"
            "  elevation: 0\n"
            "  unit_system: metric\n"
            "  time_zone: UTC\n"
            "http:\n"
            "  server_host: 127.0.0.1\n"
            f"  server_port: {http_port}\n"
            "api:\n"
            "onboarding:\n"
            "config:\n"
        )
    hass = subprocess.Popen(
        [sys.executable, "-m", "homeassistant", "--config", config_dir, "--skip-pip"],
        stdout=open(os.path.join(config_dir, "hass.out"), "w"),
        stderr=subprocess.STDOUT,
        # Home Assistant goes with this script, even when the test kills it.
        preexec_fn=die_with_parent,
    )
    try:
        serve(base, broker_port, config_dir, hass)
    finally:
        hass.terminate()
        try:
            hass.wait(timeout=20)
        except subprocess.TimeoutExpired:
            hass.kill()


def serve(base, broker_port, config_dir, hass):
    deadline = time.time() + 180
    while True:
        if hass.poll() is not None:
            raise SystemExit(f"Home Assistant exited ({hass.returncode}); see {config_dir}/hass.out")
        try:
            request("GET", base + "/api/onboarding")
            break
        except Exception:
            if time.time() > deadline:
                raise SystemExit("Home Assistant did not answer within 180 s")
            time.sleep(0.5)
    client_id = base + "/"
    user = request(
        "POST",
        base + "/api/onboarding/users",
        {
            "client_id": client_id,
            "name": "Test",
            "username": "test",
            "password": "test-password-1",
            "language": "en",
        },
    )
    tokens = request(
        "POST",
        base + "/auth/token",
        {"grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id},
        form=True,
    )
    token = tokens["access_token"]
    flow = request(
        "POST", base + "/api/config/config_entries/flow", {"handler": "mqtt"}, token=token
    )
    log("mqtt flow:", flow.get("type"), flow.get("step_id"))
    if flow.get("type") == "form":
        flow = request(
            "POST",
            base + "/api/config/config_entries/flow/" + flow["flow_id"],
            {"broker": "127.0.0.1", "port": broker_port},
            token=token,
        )
    log("mqtt flow result:", flow.get("type"), flow.get("reason"), flow.get("errors"))
    if flow.get("type") != "create_entry":
        raise SystemExit(f"the MQTT integration was not set up: {flow}")
    print(json.dumps({"ok": True, "ready": True}), flush=True)

    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "stop":
                return
            if op == "wait_entity":
                answer = wait_entity(base, token, command["entity_id"], command.get("timeout", 60),
                                     command.get("not_state"))
            elif op == "state":
                answer = {"ok": True, "state": state(base, token, command["entity_id"])}
            elif op == "entities":
                states = request("GET", base + "/api/states", token=token)
                ids = sorted(s["entity_id"] for s in states
                             if s["entity_id"].startswith(command.get("prefix", "")))
                answer = {"ok": True, "ids": ids}
            elif op == "service":
                request(
                    "POST",
                    f"{base}/api/services/{command['domain']}/{command['service']}",
                    command.get("data", {}),
                    token=token,
                )
                answer = {"ok": True}
            else:
                answer = {"ok": False, "error": "unknown op " + op}
        except Exception as e:  # the test reads the error
            answer = {"ok": False, "error": repr(e)}
        print(json.dumps(answer), flush=True)


def state(base, token, entity_id):
    try:
        return request("GET", f"{base}/api/states/{entity_id}", token=token)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def wait_entity(base, token, entity_id, timeout, not_state):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = state(base, token, entity_id)
        if last is not None and last.get("state") not in ("unavailable", "unknown", not_state):
            return {"ok": True, "state": last}
        time.sleep(0.25)
    return {"ok": False, "error": f"{entity_id} not there within {timeout} s", "state": last}


if __name__ == "__main__":
    import urllib.error  # noqa: F401
    import urllib.parse  # noqa: F401
    main()
