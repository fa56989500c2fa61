"""configurable-http-proxy: find it, or install it from npm into the state directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tqdm import tqdm

CHP = "configurable-http-proxy"
CHP_SPEC = "configurable-http-proxy@^5.3"


class ProxyInstallError(RuntimeError):
    pass


def find_proxy(prefix: Path) -> str | None:
    local = prefix / "node_modules" / ".bin" / CHP
    if local.exists():
        return str(local)
    return shutil.which(CHP)


def ensure_proxy(prefix: Path) -> str:
    """Path of the proxy executable, installing it under ``prefix`` with npm when missing."""
    found = find_proxy(prefix)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise ProxyInstallError(
            f"{CHP} is not installed and npm is missing: install Node.js 20 (npm) or {CHP}."
        )
    prefix.mkdir(parents=True, exist_ok=True)
    with tqdm(total=1, desc=f"Installing {CHP} from npm", unit="step", leave=True) as bar:
        result = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", CHP_SPEC],
            capture_output=True, text=True,
        )
        bar.update(1)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ProxyInstallError(f"npm install {CHP_SPEC} failed: {last}")
    found = find_proxy(prefix)
    if not found:
        raise ProxyInstallError(f"npm installed {CHP_SPEC} but {CHP} was not found under {prefix}")
    return found


def proxy_command(executable: str, *, ip: str, port: int, api_port: int, hub_port: int) -> list[str]:
    """The proxy's command line: public on ip:port, REST API and hub on loopback."""
    hub = f"http://127.0.0.1:{hub_port}"
    return [
        executable,
        "--ip", ip,
        "--port", str(port),
        "--api-ip", "127.0.0.1",
        "--api-port", str(api_port),
        "--default-target", hub,
        "--error-target", f"{hub}/hub/error",
        "--log-level", "warn",
    ]
