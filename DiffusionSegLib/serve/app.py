"""The HTTP routes of `serve` (FastAPI). See docs/service.md for the API with examples.

Every route but /v1/health needs the bearer token: 401 without credentials, 403 with wrong
ones. Request bodies are JSON or multipart form data (`request` JSON + `image` file), read as
they arrive with their limits applied to the bytes received (uploads.py); nothing is ever
unpickled. A malformed request of any kind is a 4xx, never a 500. Errors answer with the same
object as an error event ({"event": "error", "code", "message", "hint"}), so clients handle both
paths alike. Event streams wait in the event loop, not in a thread each, so any number of open
streams leaves the thread pool (and /v1/health) free.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import __version__
from ..contract.errors import DiffusionSegError, InvalidRequest
from ..contract.events import _jsonable, error_event
from .auth import token_matches
from .errors import http_status
from .health import health
from .inputs import remove_folder
from .job import Job
from .jobs import JobService
from .uploads import declared_length, read_json_body, receive_form

NDJSON = "application/x-ndjson"


def create_app(service: JobService, token: str, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The app; `on_shutdown` runs when the server stops (uvicorn re-raises SIGTERM after its
    graceful shutdown, so code after `server.run` would never run: clean-up belongs here)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await run_in_threadpool(on_shutdown)

    async def require_token(request: Request) -> None:   # async: no pool thread for a header check
        matches = token_matches(request.headers.get("authorization"), token)
        if matches is None:
            raise HTTPException(401, "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
        if not matches:
            raise HTTPException(403, "The bearer token is not valid for this server.")

    app = FastAPI(title="DiffusionSeg worker", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    authorised = [Depends(require_token)]

    @app.exception_handler(DiffusionSegError)
    async def refused(request: Request, error: DiffusionSegError) -> JSONResponse:
        retry = getattr(error, "retry_after", None)
        return JSONResponse(error_event(error.code, error.message, error.hint), status_code=http_status(error),
                            headers={"Retry-After": str(retry)} if retry is not None else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 409: "not_ready"}
        code = codes.get(error.status_code, "http")
        return JSONResponse(error_event(code, str(error.detail)), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in error.errors()[:4])
        return JSONResponse(error_event("invalid_request", f"Invalid request parameters: {problems[:300]}"),
                            status_code=400)

    def job_or_404(job_id: str) -> Job:
        try:
            return service.get(job_id)
        except KeyError:
            raise HTTPException(404, f"No job {job_id[:40]!r} on this server (finished jobs are kept for a "
                                     "while, then forgotten).") from None

    @app.get("/v1/health")
    def get_health() -> dict[str, Any]:
        return health(service.runner, service)

    @app.post("/v1/jobs", dependencies=authorised, status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        service.check_room()   # 429 before a byte of an upload is received
        kind = request.headers.get("content-type", "")
        declared = declared_length(request.headers)
        try:
            if kind.lower().startswith("multipart/form-data"):
                folder = service.new_folder()
                try:
                    field, upload = await receive_form(request.stream(), kind, declared, folder,
                                                       service.max_upload_bytes)
                    job = await run_in_threadpool(service.submit, _parse_json(field), folder, upload)
                except BaseException:
                    remove_folder(folder)
                    raise
            else:
                body = await read_json_body(request.stream(), declared)
                job = await run_in_threadpool(service.submit, _parse_json(body))
        except ClientDisconnect:
            raise InvalidRequest("The client went away before the request was complete.") from None
        return {"id": job.id, "state": job.state, "position": service.position(job),
                "events": f"/v1/jobs/{job.id}/events"}

    @app.get("/v1/jobs", dependencies=authorised)
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [job.describe(service.position(job)) for job in list(service.jobs.values())]}

    @app.get("/v1/jobs/{job_id}", dependencies=authorised)
    def get_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        return job.describe(service.position(job))

    @app.get("/v1/jobs/{job_id}/events", dependencies=authorised)
    async def events(job_id: str, start: int = 0) -> StreamingResponse:   # a stream never holds a thread
        job = job_or_404(job_id)
        return StreamingResponse(_stream(job, max(0, start)), media_type=NDJSON)

    @app.get("/v1/jobs/{job_id}/result", dependencies=authorised)
    def result(job_id: str) -> FileResponse:
        job = job_or_404(job_id)
        if job.state != "done":
            raise HTTPException(409, f"Job {job_id} has no result ({job.state}).")
        return FileResponse(job.request.output, filename=_name(job.request.output))

    @app.get("/v1/jobs/{job_id}/files/{name}", dependencies=authorised)
    def file(job_id: str, name: str) -> FileResponse:
        job = job_or_404(job_id)
        if job.state != "done" or name not in job.files():  # a plain name listed by the job, never a path
            raise HTTPException(404, f"Job {job_id} has no file {name[:80]!r}.")
        return FileResponse(job.folder / name, filename=name)

    @app.delete("/v1/jobs/{job_id}", dependencies=authorised)
    def cancel(job_id: str) -> dict[str, Any]:
        job_or_404(job_id)
        try:
            action = service.cancel(job_id)
        except KeyError:
            raise HTTPException(404, f"No job {job_id[:40]!r} on this server.") from None
        return {"id": job_id, "action": action}

    return app


def _parse_json(body: Any) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidRequest("The job request is nested too deeply to be a job request.") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"The job request is not valid JSON: {str(exc)[:200]}") from None


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name


async def _stream(job: Job, start: int) -> AsyncIterator[bytes]:
    """NDJSON lines from event `start` until the job's result or error event."""
    index = start
    while True:
        events, finished = await job.next_events(index)
        for event in events:
            yield (json.dumps(event, ensure_ascii=False, default=_jsonable) + "\n").encode()
        index += len(events)
        if finished and len(job.events) <= index:
            return
