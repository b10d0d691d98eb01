"""Request bodies read as they arrive, with their limits applied to the bytes received.

A job is JSON (at most MAX_REQUEST_BYTES) or multipart form data: a `request` field (that
JSON) and the image as the file field `image`. The form is parsed while it streams in
(python-multipart's push parser) and the image goes straight into the job's folder under a fixed
name, so an upload over --max-upload-mb is refused at the byte that passes the limit — whatever
Content-Length said, chunked or not — and nothing is spooled to the system's temporary folder,
where a killed server would leave patient data behind (the job folder is swept at the next
start: workdir.py). A declared length over the limit is refused before a byte is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..contract.errors import InvalidRequest, describe
from ..contract.request import MAX_REQUEST_BYTES
from .errors import RequestTooLarge, UploadTooLarge
from .inputs import UPLOAD_SUFFIXES, suffix_of

FORM_OVERHEAD = 64 * 1024   # boundaries and part headers around the two fields
FIELDS = ("request", "image")


def declared_length(headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise InvalidRequest(f"Content-Length {describe(value, 40)} is not a number of bytes.")
    return int(value)


def _too_large(max_upload_bytes: int) -> UploadTooLarge:
    return UploadTooLarge(f"The upload is larger than this server's limit of {max_upload_bytes} bytes "
                          f"({max_upload_bytes / 2**20:.0f} MiB).",
                          hint="Crop the volume (ROI) or ask the server's owner to raise --max-upload-mb.")


async def read_json_body(chunks: AsyncIterator[bytes], declared: int | None) -> bytes:
    """The whole body of a JSON job, refused (413) at the first byte past MAX_REQUEST_BYTES."""
    message = (f"A job request is at most {MAX_REQUEST_BYTES} bytes of JSON (a request is a few hundred); "
               "upload images as multipart form data, not inside the JSON.")
    if declared is not None and declared > MAX_REQUEST_BYTES:
        raise RequestTooLarge(message)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise RequestTooLarge(message)
    return bytes(body)


class _Form:
    """Callbacks of the push parser: the `request` field kept in memory, the `image` written to
    `folder` as it arrives."""

    def __init__(self, folder: Path, max_upload_bytes: int):
        self.folder, self.max_upload_bytes = folder, max_upload_bytes
        self.fields: dict[str, bytes] = {}
        self.upload: Path | None = None
        self.filename = ""
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._buffer = bytearray()
        self._file = None
        self.written = 0
        self.complete = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data, "on_part_end": self._end,
                "on_end": self._finished}

    def _finished(self) -> None:
        self.complete = True

    def _begin(self) -> None:
        self._headers, self._field, self._value, self._name = {}, b"", b"", None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower().strip()] = self._value.strip()
        self._field, self._value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in FIELDS:
            raise InvalidRequest(f"Unexpected form field {describe(name, 40)}; a job form has the fields "
                                 "'request' (the JSON) and 'image' (the file).")
        if name in self.fields or (name == "image" and self.upload is not None):
            raise InvalidRequest(f"The form holds the field '{name}' twice.")
        self._name = name
        if name == "image":
            self._open(options.get(b"filename", b"").decode("utf-8", "replace"))
        else:
            self._buffer = bytearray()

    def _open(self, filename: str) -> None:
        suffix = suffix_of(filename)
        if suffix not in UPLOAD_SUFFIXES:
            raise InvalidRequest(f"Uploaded file {describe(filename, 60)} is not a supported single-file image.",
                                 hint=f"Upload one of {', '.join(UPLOAD_SUFFIXES)} (a DICOM series: convert it to "
                                      ".nrrd or .nii.gz first).")
        self.filename = filename
        self.upload = self.folder / f"input{suffix}"
        self._file = os.fdopen(os.open(self.upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "image":
            self.written += end - start
            if self.written > self.max_upload_bytes:
                raise _too_large(self.max_upload_bytes)
            self._file.write(data[start:end])
        elif self._name is not None:
            self._buffer += data[start:end]
            if len(self._buffer) > MAX_REQUEST_BYTES:
                raise RequestTooLarge(f"The form's 'request' field is over {MAX_REQUEST_BYTES} bytes.")

    def _end(self) -> None:
        if self._name == "image":
            self.close()
            if self.written == 0:
                raise InvalidRequest(f"The uploaded file {describe(self.filename, 60)} is empty.")
        elif self._name is not None:
            self.fields[self._name] = bytes(self._buffer)
        self._name = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_form(chunks: AsyncIterator[bytes], content_type: str, declared: int | None, folder: Path,
                       max_upload_bytes: int) -> tuple[bytes, str]:
    """(the `request` field, the path of the uploaded image in `folder`). The caller removes
    `folder` when this raises."""
    if declared is not None and declared > max_upload_bytes + FORM_OVERHEAD:
        raise _too_large(max_upload_bytes)
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("The multipart form has no boundary in its Content-Type.")
    form = _Form(folder, max_upload_bytes)
    try:
        parser = MultipartParser(boundary, form.callbacks())
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > max_upload_bytes + FORM_OVERHEAD:
                raise _too_large(max_upload_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(f"The multipart form is malformed: {str(exc)[:200]}") from None
    finally:
        form.close()
    if not form.complete:
        raise InvalidRequest("The multipart form ended before its closing boundary (an upload cut short?).")
    if form.upload is None:
        raise InvalidRequest("A multipart job needs the image as a file field named 'image'.")
    return form.fields.get("request", b"{}"), str(form.upload)
