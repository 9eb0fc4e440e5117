"""A real ComfyUI v0.8.0 server for the end-to-end tests: started as a subprocess on the CPU,
loopback only, on a free port, with its own temporary base folder (models, input, output, user,
custom_nodes) so nothing outside that folder is written. The log is kept for assertions.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 240     # a cold start imports torch and every comfy_extras module
REQUEST_TIMEOUT_S = 60


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test process dies without running its finaliser."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """``python main.py --cpu --listen 127.0.0.1 ...`` with ``custom_nodes`` = {folder name: path}."""

    def __init__(self, comfyui: Path, base: Path, custom_nodes: dict[str, Path]):
        self.comfyui = Path(comfyui)
        self.base = Path(base)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "comfyui.log"
        self.process: subprocess.Popen | None = None
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        for name, target in custom_nodes.items():
            (self.base / "custom_nodes" / name).symlink_to(Path(target).resolve(), target_is_directory=True)

    @property
    def models(self) -> Path:
        return self.base / "models"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def input(self) -> Path:
        return self.base / "input"

    def command(self) -> list[str]:
        frontend = self.base / "frontend"  # an empty folder spares the frontend package
        frontend.mkdir(exist_ok=True)
        return [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--disable-api-nodes", "--base-directory", str(self.base), "--front-end-root", str(frontend),
                # the default database lives inside the ComfyUI checkout: keep it in memory instead
                "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]

    def start(self) -> "ComfyServer":
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMFYUI_PATH")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.comfyui, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited with code {self.process.returncode} before it was ready; "
                                  f"log {self.log_path}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=5)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        self.stop()
        raise ServerError(f"ComfyUI was not ready within {READY_TIMEOUT_S} s; log {self.log_path}:\n"
                          f"{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP -----------------------------------------------------------------------------------
    def _request(self, path: str, body=None, timeout: float = REQUEST_TIMEOUT_S):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:  # 4xx/5xx carry a JSON body worth reading
            return err.code, err.read()

    def fetch(self, path: str, timeout: float = REQUEST_TIMEOUT_S) -> bytes:
        status, raw = self._request(path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path}: HTTP {status}: {raw[:2000]!r}")
        return raw

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT_S):
        return json.loads(self.fetch(path, timeout))

    def post(self, path: str, body) -> tuple[int, dict]:
        status, raw = self._request(path, body)
        return status, json.loads(raw) if raw else {}

    def run_prompt(self, prompt: dict, timeout_s: float = 300) -> dict:
        """Queue an API-format prompt through ``POST /prompt``; poll ``/history/<id>`` until it ends."""
        status, reply = self.post("/prompt", {"prompt": prompt, "client_id": "sae-e2e"})
        if status != 200 or reply.get("node_errors"):
            raise ServerError(f"POST /prompt refused the prompt (HTTP {status}): {json.dumps(reply, indent=1)}")
        prompt_id = reply["prompt_id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and (entry.get("status") or {}).get("status_str") in ("success", "error"):
                return entry
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI died while running prompt {prompt_id}:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout_s} s:\n{self.log()[-4000:]}")
