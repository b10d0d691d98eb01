"""The refusals only `serve` makes, each with its HTTP status (the routes answer with the same
object as an error event: {"event": "error", "code", "message", "hint"})."""

from __future__ import annotations

from ..contract.errors import InvalidRequest


class PathNotAllowed(InvalidRequest):
    """A server-side path outside every --allow-root folder."""

    code = "path_not_allowed"
    status = 403


class ModelNotAllowed(InvalidRequest):
    """A model reference this server may not load. One message whatever the reference names, so
    a client cannot tell the server's existing folders from missing ones."""

    code = "model_not_allowed"
    status = 403


class UploadTooLarge(InvalidRequest):
    code = "upload_too_large"
    status = 413


class RequestTooLarge(InvalidRequest):
    code = "request_too_large"
    status = 413


class QueueFull(InvalidRequest):
    """More jobs waiting than --max-queue: try again after `retry_after` seconds (HTTP 429)."""

    code = "queue_full"
    status = 429

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 10):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


def http_status(error: Exception) -> int:
    return getattr(error, "status", 400)
