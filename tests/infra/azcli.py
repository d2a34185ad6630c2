"""The real `az` (the one installed beside this Python) with our wheel, logged in offline to the emulator.

All CLI state is private (AZURE_CONFIG_DIR, AZURE_EXTENSION_DIR); telemetry, surveys, update checks and
dynamic installs are off; and every az call runs with HTTP(S)_PROXY pointed at a local trap that records
any connection, so a test can prove that no request left the machine."""
import datetime
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from .net import free_port

ROOT = Path(__file__).resolve().parents[2]
AZ = Path(sys.executable).parent / "az"
CLOUD = "AzextPgdumpLocal"


class ProxyTrap:
    """A TCP listener that records and drops every connection made to it."""

    def __init__(self):
        self.port = free_port()
        self.hits: list = []
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(512).split(b"\r\n", 1)[0].decode(errors="replace"))
                except OSError:
                    self.hits.append("<no request line>")

    def close(self):
        self._sock.close()


def build_wheel(outdir: Path) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(outdir), str(ROOT)], check=True, timeout=300, cwd=outdir)
    return next(outdir.glob("pgdump-*.whl"))


class AzCli:
    def __init__(self, emulator, certs, home: Path):
        self.emulator, self.home = emulator, home
        self.trap = ProxyTrap()
        self.identity_header = secrets.token_hex(16)
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
        self.base_env.update(
            AZURE_CONFIG_DIR=str(home / "config"), AZURE_EXTENSION_DIR=str(home / "extensions"),
            AZURE_CORE_COLLECT_TELEMETRY="false", AZURE_CORE_SURVEY_MESSAGE="false",
            AZURE_EXTENSION_USE_DYNAMIC_INSTALL="no", AZURE_CORE_NO_COLOR="true",
            AZURE_CORE_DISABLE_PROGRESS_BAR="true", REQUESTS_CA_BUNDLE=str(certs.ca),
            # `python -m azure.cli` would put the working directory first on sys.path: run from a checkout, az
            # would import the extension from the source tree instead of the wheel it installed.
            PYTHONSAFEPATH="1",
            IDENTITY_ENDPOINT=f"{emulator.url}/msi/token", IDENTITY_HEADER=self.identity_header)
        self.env = dict(self.base_env, HTTPS_PROXY=f"http://127.0.0.1:{self.trap.port}",
                        HTTP_PROXY=f"http://127.0.0.1:{self.trap.port}", NO_PROXY="127.0.0.1,localhost",
                        https_proxy=f"http://127.0.0.1:{self.trap.port}",
                        http_proxy=f"http://127.0.0.1:{self.trap.port}", no_proxy="127.0.0.1,localhost")

    def setup(self, wheel: Path) -> "AzCli":
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        # A fresh check time stops az from asking a public blob store for the latest version.
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        (config / "versionCheck.json").write_text(json.dumps({"check_time": now}))
        # The extension's own dependencies come from the package index, like a user's install;
        # this is the only az call allowed to leave the machine, so it runs without the trap.
        self.run("extension", "add", "--source", str(wheel), "--yes", env=self.base_env, timeout=600)
        self.run("cloud", "register", "--name", CLOUD, "--endpoint-resource-manager", self.emulator.url + "/")
        self.run("cloud", "set", "--name", CLOUD)
        self.run("login", "--identity")
        return self

    def run(self, *args, check=True, env=None, timeout=300, input=None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(AZ), *args], env=env or self.env, capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"az {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def private_config(self, dest: Path, env=None) -> dict:
        """The environment of an az logged in as this one but with a configuration folder of its own (what
        install-utilities writes under), so a test's installs are seen by no other test."""
        shutil.copytree(self.home / "config", dest)
        return dict(env or self.env, AZURE_CONFIG_DIR=str(dest))

    def json(self, *args, **kw):
        return json.loads(self.run(*args, "-o", "json", **kw).stdout)

    def close(self):
        self.trap.close()
        shutil.rmtree(self.home, ignore_errors=True)
