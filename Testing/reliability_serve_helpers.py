"""A real `serve` process with the model-free test methods (bright-threshold, slow-load) for the
reliability tests, and raw HTTP: requests a well-behaved client would never send, bodies sent
only in part, many open streams."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fake_methods import fake_cli_command
from serve_helpers import ROOT, SERVE_ENV


class Server:
    def __init__(self, process: subprocess.Popen, ready: dict, token: str, stderr: Path):
        self.process, self.ready, self.token, self.stderr = process, ready, token, stderr
        self.port = ready["port"]

    @property
    def url(self) -> str:
        return self.ready["url"]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60.0, auth: bool = True) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            all_headers = {**({"Authorization": f"Bearer {self.token}"} if auth else {}), **(headers or {})}
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()   # case-insensitive names
        finally:
            connection.close()

    def post_json(self, data, timeout: float = 60.0) -> tuple[int, dict]:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        status, _, payload = self.request("POST", "/v1/jobs", body, {"Content-Type": "application/json"}, timeout)
        return status, (json.loads(payload) if payload else {})

    def health(self, timeout: float = 30.0) -> dict:
        status, _, payload = self.request("GET", "/v1/health", timeout=timeout, auth=False)
        assert status == 200, payload
        return json.loads(payload)

    def events(self, job_id: str, timeout: float = 120.0) -> Iterator[dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", f"/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {self.token}"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            for line in response:
                if line.strip():
                    event = json.loads(line)
                    yield event
                    if event["event"] in ("result", "error"):
                        return
        finally:
            connection.close()

    def raw(self, head: bytes) -> socket.socket:
        """A connection that has sent `head` (request line, headers, maybe part of a body)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(head)
        return sock

    def head(self, method: str, path: str, headers: dict) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {self.token}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace")


def answer_of(sock: socket.socket, timeout: float) -> int | None:
    """The status of the response that arrives within `timeout` seconds (None: nothing came)."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except (socket.timeout, ConnectionResetError):
        return None
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data.split(b" ", 2)[1])


def read_ready(process: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}")
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if not line:   # stdout closed: the server has ended
                raise RuntimeError(f"serve exited with {process.wait(timeout=30)}")
            return json.loads(line)
    raise TimeoutError("serve did not print its ready line")


def start(folder: Path, *arguments: str, env: dict | None = None, cli=fake_cli_command) -> Server:
    """`cli(*arguments)`: the command line of the CLI with test methods registered."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "token"
    stderr = folder / f"serve-{time.monotonic_ns()}.stderr"
    with open(stderr, "w") as errors:
        process = subprocess.Popen(cli("serve", "--token-file", token_file, *arguments), cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=errors, text=True,
                                   env={**os.environ, **SERVE_ENV, **(env or {})})
    try:
        ready = read_ready(process)
    except BaseException:
        stop(process)
        raise
    return Server(process, ready, token_file.read_text().strip(), stderr)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(folder: Path, *arguments: str, env: dict | None = None, cli=fake_cli_command) -> Iterator[Server]:
    server = start(folder, *arguments, env=env, cli=cli)
    try:
        yield server
    finally:
        stop(server.process)


def multipart(request: dict | bytes, image: bytes | None, filename: str = "ct.nrrd",
              boundary: str = "reliability-boundary") -> tuple[bytes, dict]:
    parts = []
    field = request if isinstance(request, bytes) else json.dumps(request).encode()
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n".encode() + field + b"\r\n")
    if image is not None:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + image + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
