"""Soak and faults (issue 23): 200 jobs through one `serve` from four clients at once, with
random cancels (queued and running), clients that disconnect (from the event stream and in the
middle of an upload) and uploads over the limit. Afterwards the server's resident memory, open
files, threads, work folder and temporary folder must be back at their baseline.

Slow (a few minutes on a 2-core machine), so not in the default run:

    PYTHONPATH=. python -m pytest -m slow -s Testing/test_reliability_soak.py

It prints its figures (baseline and after, per resource, and the outcomes of the 200 jobs).
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time

import psutil
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume
from reliability_serve_helpers import multipart, running

pytest.importorskip("slicer")   # the slow test method lives with the Slicer worker's test methods
from slicer_worker_methods import workerCommand  # noqa: E402

JOBS = 200
CLIENTS = 4
KINDS = ("upload", "path", "cancel", "disconnect", "cut_upload", "oversize")


def measure(server) -> dict:
    time.sleep(11)
    server.health()   # the thread pool ends workers idle for 10 s when it next runs something
    process = psutil.Process(server.process.pid)
    work = server.folder / "work"
    return {"rss_mb": round(process.memory_info().rss / 2**20, 1), "open_files": process.num_fds(),
            "threads": process.num_threads(),
            "work_entries": sorted(p.name for p in work.iterdir() if not p.name.startswith(".")),
            "tmp_entries": sorted(p.name for p in (server.folder / "spool").iterdir())}


def settle(server, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = server.health()
        if not health["busy"] and not health["queued"]:
            return
        assert time.monotonic() < deadline, health
        time.sleep(0.2)


def forget_all(server) -> None:
    status, _, payload = server.request("GET", "/v1/jobs")
    for job in json.loads(payload)["jobs"]:
        server.request("DELETE", f"/v1/jobs/{job['id']}")


def one_job(server, kind: str, rng: random.Random, image: bytes, outcomes: collections.Counter) -> None:
    params = {"threshold": 0.5, "size": 20}
    data = {"method": "bright-threshold", "device": "cpu", "params": params, "pipeline": {"axis": "k"}}
    if kind == "oversize":
        body, headers = multipart(data, b"x" * (2 * 2**20))
        try:
            status, _, _ = server.request("POST", "/v1/jobs", body, headers)
        except (BrokenPipeError, ConnectionResetError):
            status = "reset"
        outcomes[f"oversize:{status}"] += 1
        return
    if kind == "cut_upload":
        body, headers = multipart(data, image)
        sock = server.raw(server.head("POST", "/v1/jobs", {**headers, "Content-Length": str(len(body))})
                          + body[:len(body) // 2])
        sock.close()   # gone in the middle of the upload
        outcomes["cut_upload"] += 1
        return
    if kind == "cancel":
        data = {**data, "method": "slow-bright-threshold"}
    if kind == "path":
        data = {**data, "input": str(server.folder / "data" / "ct.nrrd")}
        body, headers = json.dumps(data).encode(), {"Content-Type": "application/json"}
    else:
        body, headers = multipart(data, image)
    while True:
        status, answer_headers, payload = server.request("POST", "/v1/jobs", body, headers)
        if status != 429:
            break
        outcomes["retried_after_429"] += 1
        time.sleep(min(2.0, int(answer_headers["Retry-After"])))
    assert status == 201, payload
    job_id = json.loads(payload)["id"]
    if kind == "cancel":
        time.sleep(rng.uniform(0.0, 1.5))   # queued, loading or segmenting: whatever it is by then
        server.request("DELETE", f"/v1/jobs/{job_id}")
    if kind == "disconnect":
        sock = server.raw(server.head("GET", f"/v1/jobs/{job_id}/events", {}))
        sock.recv(200)
        sock.close()   # the client goes away mid-stream
    final = list(server.events(job_id))[-1]
    outcomes[f"{kind}:{final.get('code', final['event'])}"] += 1
    if final["event"] == "result":
        status, _, labelmap = server.request("GET", f"/v1/jobs/{job_id}/result")
        assert status == 200 and len(labelmap) > 100
    server.request("DELETE", f"/v1/jobs/{job_id}")   # forget it: its files go


@pytest.mark.slow
def test_two_hundred_jobs_with_faults_leave_the_server_as_it_was(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "spool").mkdir()
    sitk.WriteImage(ct_like_volume(size=(20, 16, 4)), str(tmp_path / "data" / "ct.nrrd"))
    image = (tmp_path / "data" / "ct.nrrd").read_bytes()
    with running(tmp_path, "--allow-root", str(tmp_path / "data"), "--work-dir", str(tmp_path / "work"),
                 "--max-upload-mb", "1", "--max-queue", "8", env={"TMPDIR": str(tmp_path / "spool")},
                 cli=workerCommand) as server:
        server.folder = tmp_path
        warm = collections.Counter()
        for kind in ("upload", "path", "cancel", "disconnect", "oversize") * 2:   # every path once, warm
            one_job(server, kind, random.Random(0), image, warm)
        settle(server)
        forget_all(server)
        baseline = measure(server)
        rng = random.Random(23)
        plan = [rng.choice(KINDS) for _ in range(JOBS)]
        outcomes: collections.Counter = collections.Counter()
        errors = []

        def client(index: int) -> None:
            own = random.Random(index)
            for kind in plan[index::CLIENTS]:
                try:
                    one_job(server, kind, own, image, outcomes)
                except Exception as error:  # noqa: BLE001 - reported below
                    errors.append(f"{kind}: {error!r}")

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1800)
        seconds = time.monotonic() - started
        settle(server)
        forget_all(server)
        after = measure(server)
        health = server.health()
        print(f"\nsoak: {JOBS} jobs from {CLIENTS} clients in {seconds:.0f} s; outcomes {dict(sorted(outcomes.items()))}")
        print(f"soak: baseline {baseline}")
        print(f"soak: after    {after}; jobs_run {health['jobs_run']}")
        assert not errors, errors[:5]
        assert sum(v for k, v in outcomes.items() if k != "retried_after_429") == JOBS
        assert all(key.split(":")[1] in ("result", "cancelled", "413", "reset") for key in outcomes
                   if ":" in key), outcomes
        assert after["work_entries"] == baseline["work_entries"] == []   # no job folder, no upload left
        assert after["tmp_entries"] == baseline["tmp_entries"] == []     # nothing spooled, nothing left
        assert after["open_files"] <= baseline["open_files"] + 2
        assert after["threads"] <= baseline["threads"] + 2
        assert after["rss_mb"] <= baseline["rss_mb"] + 64
        assert "Traceback" not in server.stderr_text()
