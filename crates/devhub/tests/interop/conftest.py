"""Starts devhub with TLS on 127.0.0.1:443 (HTTPS/WSS) and :8883 (MQTT/TLS), as the
official SDKs hard-code those ports, and stops it after the tests."""

import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest


# DPS enrollments devhub serves for the provisioning tests.
ID_SCOPE = "0ne00SDKTST"
GROUP_KEY = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
SOLO_KEY = "c29sby1kZXZpY2Uta2V5LWZvci10ZXN0cy0xMjM0NTY="


class Devhub:
    def __init__(self, proc, tls_dir, lines):
        self.proc = proc
        self.ca = os.path.join(tls_dir, "ca.pem")
        self.service_cs = next(l.split("service      ", 1)[1] for l in lines if "devhub: service" in l)
        self.devices = {}
        for l in lines:
            m = re.search(r"devhub: device       (.*DeviceId=([^;]+);.*)", l)
            if m:
                self.devices[m.group(2)] = m.group(1)
        self.http = next(re.search(r"http://([^/]+)/", l).group(1) for l in lines if "listening    http://" in l)

    def device_cs(self, device, gateway=True):
        cs = self.devices[device]
        return cs + (";GatewayHostName=127.0.0.1" if gateway else "")

    def service_session(self):
        """A requests session signed by the service SDK's own authentication."""
        from azure.iot.hub.auth import ConnectionStringAuthentication

        session = ConnectionStringAuthentication(self.service_cs).signed_session()
        session.verify = self.ca
        return session

    def events(self, device):
        # devhub's events API needs the iothubowner token, like the service API.
        return self.service_session().get(f"http://{self.http}/devhub/events", params={"device": device}, timeout=10).json()


@pytest.fixture(scope="session")
def devhub():
    binary = os.environ.get("DEVHUB_BIN", "target/debug/devhub")
    tls_dir = tempfile.mkdtemp(prefix="devhub-tls-")
    proc = subprocess.Popen(
        [binary, "serve", "--in-memory", "--hub-name", "localhost", "--listen", "127.0.0.1:0",
         "--tls-listen", "127.0.0.1:443", "--mqtt-tls-listen", "127.0.0.1:8883", "--tls-dir", tls_dir,
         "--device", "sdk-dev", "--device", "sdk-dev2",
         "--id-scope", ID_SCOPE, "--dps-group", f"sdk-group:{GROUP_KEY}", "--dps-device", f"sdk-solo:{SOLO_KEY}"],
        stdout=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "mqtts://" in line:
            break
    assert any("mqtts://" in l for l in lines), "devhub did not start: " + "\n".join(lines)
    hub = Devhub(proc, tls_dir, lines)
    os.environ["REQUESTS_CA_BUNDLE"] = hub.ca
    yield hub
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(tls_dir, ignore_errors=True)
