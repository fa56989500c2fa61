"""configurable-http-proxy: an exact, locked version, installed from npm into the state directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tqdm import tqdm

CHP = "configurable-http-proxy"
#: The proxy version himalia runs; ``chp/package-lock.json`` locks its whole dependency tree.
CHP_VERSION = "5.3.0"
LOCK_DIR = Path(__file__).with_name("chp")


class ProxyInstallError(RuntimeError):
    pass


def installed_version(prefix: Path) -> str | None:
    """Version of the proxy installed under ``prefix`` (None when there is none)."""
    manifest = prefix / "node_modules" / CHP / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def path_version(executable: str) -> str | None:
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def find_proxy(prefix: Path) -> str | None:
    """The proxy at exactly ``CHP_VERSION``: under ``prefix``, else on PATH."""
    if installed_version(prefix) == CHP_VERSION:
        return str(prefix / "node_modules" / ".bin" / CHP)
    on_path = shutil.which(CHP)
    if on_path and path_version(on_path) == CHP_VERSION:
        return on_path
    return None


def ensure_proxy(prefix: Path) -> str:
    """Path of the proxy executable, installed under ``prefix`` from the lock file when missing."""
    found = find_proxy(prefix)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise ProxyInstallError(
            f"{CHP} {CHP_VERSION} is not installed and npm is missing: install Node.js 20 (npm)."
        )
    prefix.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(prefix / "node_modules", ignore_errors=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(LOCK_DIR / name, prefix / name)
    with tqdm(total=1, desc=f"Installing {CHP} {CHP_VERSION} from npm", unit="step", leave=True) as bar:
        # `npm ci` installs exactly the locked tree, checked against its integrity hashes;
        # no install scripts run.
        result = subprocess.run(
            [npm, "ci", "--prefix", str(prefix), "--ignore-scripts", "--no-audit", "--no-fund",
             "--silent"],
            capture_output=True, text=True,
        )
        bar.update(1)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ProxyInstallError(f"npm ci for {CHP} {CHP_VERSION} failed: {last}")
    if installed_version(prefix) != CHP_VERSION:
        raise ProxyInstallError(f"npm installed {CHP} but version {CHP_VERSION} is not under {prefix}")
    return str(prefix / "node_modules" / ".bin" / CHP)


def proxy_command(executable: str, *, ip: str, port: int, api_port: int, hub_port: int,
                  ssl_cert: str = "", ssl_key: str = "") -> list[str]:
    """The proxy's command line: public on ip:port, REST API and hub on loopback."""
    hub = f"http://127.0.0.1:{hub_port}"
    argv = [
        executable,
        "--ip", ip,
        "--port", str(port),
        "--api-ip", "127.0.0.1",
        "--api-port", str(api_port),
        "--default-target", hub,
        "--error-target", f"{hub}/hub/error",
        "--log-level", "warn",
    ]
    if ssl_cert:
        argv += ["--ssl-cert", ssl_cert, "--ssl-key", ssl_key]
    return argv
