"""Reliability round 3 (issue 23), `serve`: nothing a client sends can make it answer 500, read
a model outside its roots, spool an upload past its limit, grow its queue without bound, starve
its health check or keep a cancelled client waiting for a model load; the terminal event comes
after the job's clean-up; a killed server's uploads are swept at the next start."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume
from reliability_serve_helpers import answer_of, multipart, running, start, stop
from serve_fuzz import fuzz_requests

LIMIT_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliable-serve")
    for name in ("data", "models/allowed", "outside", "spool"):
        (folder / name).mkdir(parents=True)
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(folder / "data" / "ct.nrrd"))
    (folder / "models" / "escape").symlink_to(folder / "outside")
    with running(folder, "--allow-root", str(folder / "data"), "--allow-model-root", str(folder / "models"),
                 "--work-dir", str(folder / "work"), "--max-upload-mb", str(LIMIT_MB), "--max-queue", "3",
                 env={"TMPDIR": str(folder / "spool")}) as running_server:
        running_server.folder = folder
        yield running_server
        assert "Traceback" not in running_server.stderr_text()


def request(server, **extra) -> dict:
    data = {"input": str(server.folder / "data" / "ct.nrrd"), "method": "bright-threshold", "device": "cpu",
            "params": {"threshold": 0.3}}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def idle(server, timeout: float = 120.0) -> None:
    """Wait until nothing runs, not even a cancelled job's load in the background."""
    deadline = time.monotonic() + timeout
    while server.health()["busy"] or server.health()["queued"]:
        assert time.monotonic() < deadline, server.health()
        time.sleep(0.1)


def work_folders(server) -> set[str]:
    return {p.name for p in (server.folder / "work").iterdir() if p.is_dir()}


def test_malformed_requests_are_400_not_500(server):
    cases = {
        "a NUL byte in input": request(server, input=str(server.folder / "data" / "ct\x00.nrrd")),
        "a JSON job without input": request(server, input=None),
        "a NUL byte in the prompt": request(server, prompt="liver\x00"),
    }
    for what, data in cases.items():
        status, answer = server.post_json(data)
        assert status == 400 and answer["event"] == "error", (what, status, answer)
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        status, answer = server.post_json(deep)
        assert status in (400, 413) and answer["code"] in ("invalid_request", "request_too_large"), answer
    status, answer = server.post_json(b"[" * 100_000)   # nested 100,000 deep and under 1 MB
    assert status == 400 and "nested too deeply" in answer["message"]
    assert server.health()["status"] == "ok"


def test_a_fuzz_of_mutated_requests_never_gets_a_500(server):
    """A few hundred requests no client should send: every field mutated, broken JSON and forms,
    odd headers and paths. Each gets a 4xx (or is a valid job); the server stays healthy."""
    before = work_folders(server)
    statuses = []
    for method, path, body, headers in fuzz_requests(server, seed=23):
        status, _, payload = server.request(method, path, body, headers, timeout=60)
        assert status < 500, (method, path, body[:200] if body else body, headers, status, payload[:500])
        statuses.append(status)
    assert len(statuses) >= 300 and statuses.count(400) > 100   # most are refused as they should be
    idle(server)
    assert server.health()["status"] == "ok"
    for job_id in work_folders(server) - before:   # accepted jobs ran; forget them
        server.request("DELETE", f"/v1/jobs/{job_id}")
    assert work_folders(server) == before


def test_models_are_confined_with_one_message_whatever_exists(server):
    refused = {}
    for reference in ("/etc", "/no/such/folder", str(server.folder / "outside"), str(server.folder / "models" /
                      "escape"), str(server.folder / "models" / "allowed" / ".." / ".." / "outside"), "../models",
                      "a/b/c", "~/models"):
        status, answer = server.post_json(request(server, model=reference))
        assert status == 403 and answer["code"] == "model_not_allowed", (reference, answer)
        refused[reference] = answer["message"].replace(repr(reference), "MODEL")
    assert len(set(refused.values())) == 1, refused   # existing and missing folders: the same words
    for reference in ("CompVis/stable-diffusion-v1-4", "random:sd-v1:64", str(server.folder / "models" / "allowed")):
        status, answer = server.post_json(request(server, model=reference))
        assert status == 201, (reference, answer)
    idle(server)


def test_upload_and_body_limits_apply_while_the_bytes_arrive(server):
    """The server answers 413 at the byte that passes the limit, before the client has sent the
    rest: with an honest Content-Length over it, and chunked without any."""
    before = work_folders(server)
    limit = LIMIT_MB * 2**20
    body, headers = multipart(request(server, input=None), b"x" * (3 * limit))
    sock = server.raw(server.head("POST", "/v1/jobs", {**headers, "Content-Length": str(len(body))}) + body[:65536])
    assert answer_of(sock, 20) == 413   # 64 kB of 3 MB sent
    sock.close()
    head = server.head("POST", "/v1/jobs", {**headers, "Transfer-Encoding": "chunked"})
    sock = server.raw(head)
    sent = 0
    while sent < limit + 256 * 1024:
        chunk = body[sent:sent + 65536]
        try:
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    assert answer_of(sock, 20) == 413   # 1.25 MB of 3 MB sent, no end in sight
    sock.close()
    for json_head in ({"Content-Type": "application/json", "Content-Length": str(50 * 2**20)},
                      {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}):
        sock = server.raw(server.head("POST", "/v1/jobs", json_head))
        filler = b"[" + b"0," * 40000
        for _ in range(30):   # 2.4 MB of a body that would be 50 MB
            data = filler if "Content-Length" in json_head else b"%x\r\n" % len(filler) + filler + b"\r\n"
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answer_of(sock, 20) == 413, json_head
        sock.close()
    time.sleep(0.5)
    assert work_folders(server) == before and list((server.folder / "spool").iterdir()) == []


def test_the_client_says_an_upload_is_too_large_instead_of_unreachable(server, tmp_path):
    """The server stops reading at the limit and closes the connection; the stdlib client (the
    Slicer panel's) compares with the limit /v1/health publishes, so the user is told why."""
    from DiffusionSegLib.serve.client import ServiceClient, ServiceError

    (tmp_path / "big.nrrd").write_bytes(b"x" * (3 * LIMIT_MB * 2**20))
    with pytest.raises(ServiceError) as refused:
        ServiceClient(server.url, server.token).submit(request(server, input=None), image=tmp_path / "big.nrrd")
    assert refused.value.code == "upload_too_large" and refused.value.status == 413
    assert "at most 1.0 MiB" in refused.value.message


def test_cancel_during_a_model_load_answers_at_once_and_the_model_stays_loaded(server):
    idle(server)
    status, answer = server.post_json(request(server, method="slow-load", params={"load_seconds": 15.0}))
    assert status == 201, answer
    job_id = answer["id"]
    events = server.events(job_id)
    for event in events:
        if event.get("stage") == "load" and event.get("done") == 0:
            break   # the load of 15 s has begun
    asked = time.monotonic()
    status, _, payload = server.request("DELETE", f"/v1/jobs/{job_id}")
    assert status == 200 and json.loads(payload)["action"] == "cancelling"
    final = [event for event in events][-1]
    answered = time.monotonic() - asked
    health = server.health()
    assert final["code"] == "cancelled" and health["running"] is None, (final, health)
    assert health["busy"] and health["models"] == [], health   # the load still runs, in the background
    assert job_id not in work_folders(server)                   # and nothing of the job is left
    idle(server)
    (model,) = server.health()["models"]
    assert model["kind"] == "slow-load" and model["hits"] == 0   # it stayed loaded …
    status, answer = server.post_json(request(server, method="slow-load", params={"load_seconds": 15.0}))
    final = list(server.events(answer["id"]))[-1]
    assert final["event"] == "result", final
    (model,) = server.health()["models"]
    assert model["hits"] == 1                                     # … and the next job used it
    print(f"cancel during a 15 s model load answered in {answered:.2f} s")


def test_the_queue_is_bounded_and_says_when_to_retry(server):
    idle(server)
    status, running_job = server.post_json(request(server, method="slow-load", params={"load_seconds": 7.0}))
    assert status == 201
    waiting = []
    for _ in range(3):
        status, answer = server.post_json(request(server))
        assert status == 201, answer
        waiting.append(answer["id"])
    status, headers, payload = server.request("POST", "/v1/jobs", json.dumps(request(server)).encode(),
                                              {"Content-Type": "application/json"})
    assert status == 429 and json.loads(payload)["code"] == "queue_full"
    assert int(headers["Retry-After"]) >= 1
    body, form = multipart(request(server, input=None), b"x" * 1000)   # an upload is refused before it is read
    status, headers, _ = server.request("POST", "/v1/jobs", body, form)
    assert status == 429 and "Retry-After" in headers
    for job_id in [running_job["id"], *waiting]:
        server.request("DELETE", f"/v1/jobs/{job_id}")
    idle(server)


def test_many_open_event_streams_leave_the_health_check_answering(server):
    idle(server)
    status, answer = server.post_json(request(server, method="slow-load", params={"load_seconds": 12.0}))
    assert status == 201
    path = f"/v1/jobs/{answer['id']}/events"
    threads = psutil.Process(server.process.pid).num_threads()
    streams = [server.raw(server.head("GET", path, {})) for _ in range(100)]
    try:
        assert [answer_of(stream, 60) for stream in streams] == [200] * 100   # every stream is open
        # no thread waits for a stream (each used to hold one of the 40 pool threads: 45 streams
        # kept /v1/health waiting 11.75 s)
        assert psutil.Process(server.process.pid).num_threads() <= threads + 3
        health = server.health(timeout=30.0)
        assert health["status"] == "ok" and health["running"] == answer["id"]
        server.request("DELETE", path.rsplit("/", 1)[0])
    finally:
        for stream in streams:
            stream.close()
    idle(server)


def test_the_terminal_event_comes_after_the_jobs_clean_up(tmp_path, monkeypatch):
    """In the service itself: when a client can see `cancelled`, the job's folder is gone and the
    worker is free (the event used to be published first, and a fast client saw both)."""
    from fake_methods import BrightThreshold

    import DiffusionSegLib.methods as registry
    import DiffusionSegLib.serve.jobs as jobs_module
    from DiffusionSegLib.contract.errors import JobCancelled

    monkeypatch.setattr(registry, "_REGISTRY", {**registry.available_methods(), "bright-threshold": BrightThreshold})
    (tmp_path / "data").mkdir()
    sitk.WriteImage(ct_like_volume(size=(8, 8, 2)), str(tmp_path / "data" / "ct.nrrd"))

    class CancelledRunner:
        def run(self, request, emit, token, partial_results=False):
            emit({"event": "progress", "stage": "load", "done": 0, "total": 1})
            raise JobCancelled()

        def unload_idle(self):
            return []

    service = jobs_module.JobService(CancelledRunner(), tmp_path / "work", [tmp_path / "data"], 2**20)
    seen = []
    removing = jobs_module.remove_folder

    def remove_folder(folder):
        job = service.jobs.get(folder.name)
        seen.append((job.finished, job.events[-1]["event"]) if job else None)
        removing(folder)

    monkeypatch.setattr(jobs_module, "remove_folder", remove_folder)
    try:
        job = service.submit({"input": str(tmp_path / "data" / "ct.nrrd"), "method": "bright-threshold"})
        events, finished = job.wait_events(0, timeout=30)
        while not finished:
            events, finished = job.wait_events(len(events), timeout=30)
        assert job.state == "cancelled" and not job.folder.exists() and service.describe()["running"] is None
        assert seen and seen[0] == (False, "progress"), seen   # cleaned up while nothing terminal was visible
    finally:
        service.close()


def _upload_left_behind(folder: Path) -> list[Path]:
    return sorted(folder.rglob("input.nrrd"))


@pytest.mark.parametrize("own_work_dir", [False, True])
def test_a_killed_servers_uploads_are_swept_at_the_next_start(tmp_path, own_work_dir):
    spool = tmp_path / "spool"
    spool.mkdir()
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(tmp_path / "ct.nrrd"))
    arguments = ["--work-dir", str(tmp_path / "work")] if own_work_dir else []
    first = start(tmp_path / "first", *arguments, env={"TMPDIR": str(spool)})
    try:
        status, answer = first.post_json({"method": "slow-load", "params": {"load_seconds": 60.0},
                                          "input": str(tmp_path / "ct.nrrd")})
        assert status in (400, 403)   # no --allow-root: inputs must be uploaded
        body, headers = multipart({"method": "slow-load", "params": {"load_seconds": 60.0}},
                                  (tmp_path / "ct.nrrd").read_bytes())
        status, _, payload = first.request("POST", "/v1/jobs", body, headers)
        assert status == 201, payload
        where = tmp_path / "work" if own_work_dir else spool
        assert len(_upload_left_behind(where)) == 1   # the patient image, on disk while the job runs
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        assert len(_upload_left_behind(where)) == 1   # a killed server cannot clean up …
        with running(tmp_path / "second", *arguments, env={"TMPDIR": str(spool)}) as second:
            assert _upload_left_behind(where) == []   # … the next one does, before it is ready
            assert "killed DiffusionSeg server" in second.stderr_text()
    finally:
        stop(first.process)
    if not own_work_dir:
        assert list(spool.iterdir()) == []


def test_two_live_servers_never_share_a_work_dir(tmp_path):
    with running(tmp_path / "first", "--work-dir", str(tmp_path / "work")) as first:
        second = None
        try:
            second = start(tmp_path / "second", "--work-dir", str(tmp_path / "work"))
        except RuntimeError as refused:
            assert "exited with 2" in str(refused)
        else:
            pytest.fail("a second server started on a work folder in use")
        finally:
            if second is not None:
                stop(second.process)
        assert first.health()["status"] == "ok"
    assert os.listdir(tmp_path / "work") == []   # the first removed its owner file on exit
