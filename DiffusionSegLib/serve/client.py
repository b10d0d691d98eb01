"""A client of `python -m DiffusionSegLib serve`, standard library only (urllib).

The Slicer panel (no torch, maybe no httpx) and the web front end both use it, so it imports
nothing outside the standard library — not even the rest of DiffusionSegLib. Typical use:

    client = ServiceClient("http://127.0.0.1:8765", token)
    job = client.submit({"method": "adzus", "prompt": "liver", "device": "auto"}, image="ct.nrrd")
    for event in client.events(job):          # queued, log, progress…, then result or error
        print(event)
    client.download(job, "liver-seg.nrrd")

`submit` with `image` uploads the file (multipart); without it the request's `input` is a path
on the server, which the server accepts only inside its --allow-root folders.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

CHUNK = 1 << 20
TERMINAL_EVENTS = ("result", "error")


class ServiceError(Exception):
    """An error answer of the server (or no answer): code, message and hint as in error events."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int | None = None):
        super().__init__(f"{message} {hint}" if hint else message)
        self.code, self.message, self.hint, self.status = code, message, hint, status


def read_token(path: str | os.PathLike) -> str:
    return Path(path).expanduser().read_text(encoding="utf-8").strip()


class ServiceClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float | None = -1.0, auth: bool = True) -> Any:
        """An open response (caller closes it); HTTP and connection errors become ServiceError."""
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, headers=all_headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout if timeout == -1.0 else timeout)
        except urllib.error.HTTPError as error:
            raise _service_error(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceError("unreachable", f"Cannot reach the DiffusionSeg server at {self.url}: {reason}",
                               "Check that it is running (and the URL and port).") from None

    def _json(self, method: str, path: str, data: Any = None, auth: bool = True) -> Any:
        body = None if data is None else json.dumps(data).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        with self._request(method, path, body, headers, auth=auth) as response:
            return json.loads(response.read() or b"null")

    # -- the API -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/v1/health", auth=False)

    def submit(self, request: dict[str, Any], image: str | os.PathLike | None = None) -> str:
        """Queue a job; returns its id. `image`: a local file to upload as the job's input."""
        if image is None:
            return self._json("POST", "/v1/jobs", request)["id"]
        self._check_before_upload(Path(image))
        body, headers = _multipart(request, Path(image))
        with self._request("POST", "/v1/jobs", body, headers, timeout=None) as response:
            return json.loads(response.read())["id"]

    def _check_before_upload(self, image: Path) -> None:
        """The server refuses an upload (over its limit, or with a wrong token) before reading it
        and closes the connection, so a client still sending may see only a reset ("unreachable"):
        compare with the limit it publishes in /v1/health and try the token on a small request
        first, so the error says what is wrong (`upload_too_large`, `forbidden`)."""
        self._json("GET", "/v1/jobs")
        try:
            size = image.stat().st_size
            limit = self.health().get("max_upload_bytes")
        except (OSError, ServiceError, AttributeError):
            return   # a missing file is reported by the upload itself; an older server has no limit here
        if isinstance(limit, int) and size > limit:
            raise ServiceError("upload_too_large", f"{image.name} is {size / 2**20:.1f} MiB; the server at {self.url} "
                                                   f"accepts uploads of at most {limit / 2**20:.1f} MiB.",
                               "Crop the volume (ROI), or ask the server's owner to raise --max-upload-mb.", 413)

    def status(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{_quote(job_id)}")

    def events(self, job_id: str, start: int = 0) -> Iterator[dict[str, Any]]:
        """The job's events as they happen (replayed from `start`), until result or error."""
        response = self._request("GET", f"/v1/jobs/{_quote(job_id)}/events?start={int(start)}", timeout=None)
        with response:
            for line in response:
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                yield event
                if event.get("event") in TERMINAL_EVENTS:
                    return

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (or forget a finished one and delete its files)."""
        return self._json("DELETE", f"/v1/jobs/{_quote(job_id)}")

    def download(self, job_id: str, destination: str | os.PathLike, name: str | None = None,
                 overwrite: bool = False) -> Path:
        """Save the job's labelmap (or the bundle file `name`) to `destination`, atomically: a
        temporary file beside it, renamed when complete. An existing file is kept unless
        `overwrite`."""
        destination = Path(destination)
        if destination.exists() and not overwrite:
            raise ServiceError("exists", f"{destination} exists; not replaced.", "Pass overwrite=True.")
        path = f"/v1/jobs/{_quote(job_id)}/" + ("result" if name is None else f"files/{_quote(name)}")
        handle, temp = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
        try:
            with os.fdopen(handle, "wb") as out, self._request("GET", path, timeout=None) as response:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
            os.replace(temp, destination)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return destination

    def run(self, request: dict[str, Any], image: str | os.PathLike | None = None,
            on_event: Callable[[dict], None] | None = None, destination: str | os.PathLike | None = None,
            on_submitted: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Submit, follow the events and download the result: the final event (result or error).
        `on_submitted(job_id)` lets a caller keep the id to cancel from another thread."""
        job_id = self.submit(request, image)
        if on_submitted is not None:
            on_submitted(job_id)
        final: dict[str, Any] = {"event": "error", "code": "disconnected",
                                 "message": "The event stream ended before the job did."}
        for event in self.events(job_id):
            if on_event is not None:
                on_event(event)
            if event.get("event") in TERMINAL_EVENTS:
                final = event
        if final["event"] == "result" and destination is not None:
            self.download(job_id, destination, overwrite=True)
        return final


def _quote(text: str) -> str:
    return urllib.parse.quote(str(text), safe="")


def _service_error(error: urllib.error.HTTPError) -> ServiceError:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message") or body.get("detail") or f"HTTP {error.code} {error.reason}"
    code = body.get("code") or {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(error.code, "http")
    return ServiceError(code, str(message), body.get("hint"), error.code)


class _MultipartBody:
    """A multipart/form-data body streamed from disk (a CT can be hundreds of MB): urllib sends
    an iterable body as it is read, with the Content-Length given up front."""

    def __init__(self, parts: list[bytes | Path]):
        self.parts = parts
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Path):
                with open(part, "rb") as handle:
                    while chunk := handle.read(CHUNK):
                        yield chunk
            else:
                yield part


def _multipart(request: dict[str, Any], image: Path) -> tuple[_MultipartBody, dict[str, str]]:
    if not image.is_file():
        raise ServiceError("input_not_found", f"Image to upload not found: {image}")
    boundary = uuid.uuid4().hex
    filename = image.name.replace('"', "_")
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n"
            f"Content-Type: application/json\r\n\r\n{json.dumps(request)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = _MultipartBody([head, image, tail])
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(body.length)}
