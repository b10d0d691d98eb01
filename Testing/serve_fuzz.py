"""Requests no client should send to `serve`, built from a valid one: every field given every
kind of wrong value, broken JSON, forms that lie or break off, odd headers and paths.

`fuzz_requests(server, seed, scale)` yields (method, path, body, headers); `scale` multiplies
the random part (the test suite runs scale 1, a few hundred requests; the slow run more)."""

from __future__ import annotations

import json
import random
from typing import Iterator

FIELDS = ("input", "output", "method", "prompt", "prompts", "model", "device", "dtype", "threads", "params",
          "pipeline", "roi", "slice_range", "seed", "evidence", "overwrite", "version", "no_such_field")
VALUES = (None, True, False, 0, -1, 1.5, 1e308, float("nan"), float("inf"), "", " ", "\x00", "\ud800",
          "x" * 5000, [], [1, 2], ["a", None], {}, {"a": 1}, {"a": {"b": {"c": {"d": {"e": {}}}}}},
          "../../etc/passwd", "/etc/passwd", "random:sd-v1:64")
PARAMS = ({"threshold": True}, {"threshold": "0.3"}, {"threshold": None}, {"threshold": [0.3]},
          {"threshold": {"v": 1}}, {"threshold": -5}, {"threshold": 1e400}, {"no_such": 1}, {"": 1},
          {"threshold": "\x00"}, {"size": 2**70}, {"size": 7.5})
PIPELINES = ({"axis": 3}, {"axis": "diagonal"}, {"intensity": None}, {"batch_size": -1}, {"batch_size": True},
             {"fill_holes": "false"}, {"nope": 1}, {"axis": ["IS"]})
BODIES = (b"", b"null", b"[]", b"1", b'"text"', b"{", b'{"input": ', b"\xff\xfe\x00", b"{}" * 1000,
          b"[" * 100_000, b'{"a":' * 50_000, b'{"' + b"k" * 200_000 + b'": 1}', b"NaN", b"\x00" * 1000,
          b'{"input": "a", "input": 5}')


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _form(boundary: str, parts: list[tuple[str, bytes, str | None]], close: bool = True) -> bytes:
    body = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


def fuzz_requests(server, seed: int = 0, scale: int = 1) -> Iterator[tuple[str, str, bytes | None, dict]]:
    rng = random.Random(seed)
    folder = server.folder
    valid = {"input": str(folder / "data" / "ct.nrrd"), "method": "bright-threshold", "device": "cpu",
             "params": {"threshold": 0.3}}
    as_json = {"Content-Type": "application/json"}
    for field in FIELDS:
        for value in VALUES:
            yield "POST", "/v1/jobs", _dumps({**valid, field: value}), as_json
    for params in PARAMS:
        yield "POST", "/v1/jobs", _dumps({**valid, "params": params}), as_json
    for pipeline in PIPELINES:
        yield "POST", "/v1/jobs", _dumps({**valid, "pipeline": pipeline}), as_json
    for body in BODIES:
        yield "POST", "/v1/jobs", body, as_json
    for _ in range(40 * scale):   # random bytes, random truncations, random field drops
        kind = rng.randrange(3)
        text = _dumps(valid)
        if kind == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        elif kind == 1:
            body = text[:rng.randrange(len(text))]
        else:
            body = _dumps({k: v for k, v in valid.items() if rng.random() < 0.5})
        yield "POST", "/v1/jobs", body, as_json
    image = (folder / "data" / "ct.nrrd").read_bytes()
    upload = {k: v for k, v in valid.items() if k != "input"}
    b = "fuzz-boundary"
    form = {"Content-Type": f"multipart/form-data; boundary={b}"}
    forms = [
        _form(b, [("request", _dumps(upload), None)]),                                 # no image
        _form(b, [("request", _dumps(upload), None), ("image", image, "ct.exe")]),     # not an image type
        _form(b, [("request", _dumps(upload), None), ("image", b"", "ct.nrrd")]),      # empty
        _form(b, [("request", _dumps(upload), None), ("image", image, "ct.nrrd"), ("image", image, "b.nrrd")]),
        _form(b, [("request", b"{not json", None), ("image", image, "ct.nrrd")]),
        _form(b, [("request", b"[" * 50_000, None), ("image", image, "ct.nrrd")]),
        _form(b, [("request", _dumps({**upload, "input": "/etc/passwd"}), None), ("image", image, "ct.nrrd")]),
        _form(b, [("other", b"1", None), ("image", image, "ct.nrrd")]),
        _form(b, [("request", _dumps(upload), None), ("image", image, "../../ct.nrrd")]),
        _form(b, [("request", _dumps(upload), None), ("image", image, "ct.nrrd\x00.exe")]),
        _form(b, [("request", _dumps(upload), None), ("image", image, "ct.nrrd")], close=False),  # cut short
        _form(b, [("request", _dumps({**upload, "method": None}), None), ("image", image, "ct.nrrd")]),
        b"--" + b.encode() + b"\r\nno headers at all\r\n",
        b"garbage without any boundary",
        image,
    ]
    for body in forms:
        yield "POST", "/v1/jobs", body, form
    yield "POST", "/v1/jobs", forms[0], {"Content-Type": "multipart/form-data"}                # no boundary
    yield "POST", "/v1/jobs", forms[0], {"Content-Type": "multipart/form-data; boundary=" + "x" * 500}
    yield "POST", "/v1/jobs", _dumps(valid), {"Content-Type": "text/plain"}
    yield "POST", "/v1/jobs", _dumps(valid), {"Content-Type": "application/json", "Content-Length": "abc"}
    for path in ("/v1/jobs/%00", "/v1/jobs/..%2F..%2Fetc", "/v1/jobs/x/events?start=-5", "/v1/jobs/x/events?start=abc",
                 "/v1/jobs/x/events?start=99999999999999999999999", "/v1/jobs/" + "a" * 5000, "/v1/jobs/x/files/..",
                 "/v1/jobs/x/files/%2Fetc%2Fpasswd", "/v1/jobs/x/result", "/v1/nothing", "/v1/health?x=%ff"):
        yield "GET", path, None, {}
    yield "DELETE", "/v1/jobs/%2F", None, {}
    yield "PUT", "/v1/jobs", b"{}", as_json
