"""`serve` as a real process over real HTTP, driven by the stdlib client: the ready line, auth
refusals, path confinement, uploads, warm caches across jobs, cancel, two clients at once."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume, rgb_image
from planted_cases import ct_volume, dice, truth_of, write
from serve_helpers import running_server

from DiffusionSegLib.serve.client import ServiceClient, ServiceError


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_sd_path):
    folder = tmp_path_factory.mktemp("serve")
    (folder / "data").mkdir()
    sitk.WriteImage(rgb_image(), str(folder / "data" / "cell.png"))
    sitk.WriteImage(ct_like_volume(size=(30, 26, 3)), str(folder / "data" / "ct.nrrd"))
    with running_server(folder, "--allow-root", str(folder / "data"), "--work-dir", str(folder / "work"),
                        "--allow-model-root", str(tiny_sd_path.parent)) as (
            ready, token, process):
        yield {"ready": ready, "token": token, "process": process, "folder": folder, "model": str(tiny_sd_path),
               "client": ServiceClient(ready["url"], token)}


def job(server, **extra) -> dict:
    request = {"input": str(server["folder"] / "data" / "cell.png"), "method": "adzus", "prompt": "cell",
               "model": server["model"], "device": "cpu", "params": {"inversion_steps": 10}}
    request.update(extra)
    return request


def raw(url: str, method: str = "GET", token: str | None = None, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_ready_line_token_file_and_auth_refusals(server):
    ready, url = server["ready"], server["ready"]["url"]
    assert ready["event"] == "ready" and url == f"http://127.0.0.1:{ready['port']}"
    assert stat.S_IMODE(os.stat(server["folder"] / "token").st_mode) == 0o600
    health = ServiceClient(url).health()  # no token needed
    assert health["status"] == "ok" and health["version"] and health["device"]["default"] == "cpu"
    assert "ram_available_bytes" in health["memory"]
    body = json.dumps(job(server)).encode()
    assert raw(f"{url}/v1/jobs", "POST", None, body) == 401
    assert raw(f"{url}/v1/jobs", "POST", "not-the-token", body) == 403
    assert raw(f"{url}/v1/jobs", "GET", None) == 401
    assert raw(f"{url}/v1/jobs/x/result", "GET", "Bearer-less") == 403
    assert server["client"].health()["jobs"] == 0  # nothing was queued by the refused calls


def test_input_paths_are_confined_to_allowed_roots(server):
    client = server["client"]
    for outside in ("/etc/passwd", str(server["folder"] / "data" / ".." / "token")):
        with pytest.raises(ServiceError) as refused:
            client.submit(job(server, input=outside))
        assert refused.value.status == 403 and refused.value.code == "path_not_allowed"
    with pytest.raises(ServiceError) as bad:
        client.submit(job(server, method="no-such-method"))
    assert bad.value.status == 400 and bad.value.code == "unknown_method"


def test_warm_worker_second_job_reuses_model_and_latents(server, tmp_path):
    client = server["client"]
    first = client.run(job(server), destination=tmp_path / "a.nrrd")
    second = client.run(job(server, prompt="nucleus"), destination=tmp_path / "b.nrrd")
    assert first["event"] == second["event"] == "result", (first, second)
    health = client.health()
    (model,) = health["models"]
    assert model["hits"] >= 1 and not model["in_use"]
    assert health["features"]["hits"]["vae-latent"] >= 1
    assert second["timings"]["load"] < first["timings"]["load"]
    assert sitk.ReadImage(str(tmp_path / "b.nrrd")).GetSize() == (70, 50)


def test_upload_volume_and_download_result_on_its_grid(server, tmp_path):
    client = server["client"]
    image = ct_like_volume(size=(30, 26, 3))
    sitk.WriteImage(image, str(tmp_path / "upload.nii.gz"))
    job_id = client.submit(job(server, input=None, prompt="liver", pipeline={"intensity": "ct-abdomen"}),
                           image=tmp_path / "upload.nii.gz")
    events = list(client.events(job_id))
    assert events[0] == {"event": "queued", "position": events[0]["position"]}
    assert events[-1]["event"] == "result", events[-1]
    client.download(job_id, tmp_path / "seg.nrrd")
    labels = sitk.ReadImage(str(tmp_path / "seg.nrrd"))
    assert labels.GetSize() == image.GetSize()
    np.testing.assert_allclose(labels.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-5)
    job_folder = server["folder"] / "work" / job_id
    # the upload is gone; the result and its provenance record stay
    assert sorted(p.name for p in job_folder.iterdir()) == ["labelmap.nrrd", "labelmap.provenance.json"]
    with pytest.raises(ServiceError):
        client.download(job_id, tmp_path / "seg.nrrd")  # never replaced without overwrite
    assert client.cancel(job_id)["action"] == "deleted"
    assert not job_folder.exists()


def test_cancel_a_running_job_keeps_the_model_warm(server, tmp_path):
    client = server["client"]
    # ~1000 UNet calls: long enough to cancel while the inversion is running.
    job_id = client.submit(job(server, params={"inversion_steps": 1000, "timestep": 999}))
    seen = []
    for event in client.events(job_id):
        seen.append(event)
        if event["event"] == "progress" and event["stage"] == "inversion" and event["done"] == 2:
            assert client.cancel(job_id)["action"] == "cancelling"
    assert seen[-1]["event"] == "error" and seen[-1]["code"] == "cancelled"
    assert client.status(job_id)["state"] == "cancelled"
    assert not (server["folder"] / "work" / job_id).exists()  # nothing written
    with pytest.raises(ServiceError) as no_result:
        client.download(job_id, tmp_path / "never.nrrd")
    assert no_result.value.status in (404, 409) and not (tmp_path / "never.nrrd").exists()
    after = client.run(job(server))
    assert after["event"] == "result"
    assert len(client.health()["models"]) == 1  # still the one warm model


def test_two_clients_at_once_are_queued_one_after_the_other(server, tmp_path):
    url, token = server["ready"]["url"], server["token"]
    finals, queued = {}, {}

    def one(name: str) -> None:
        events = []
        finals[name] = ServiceClient(url, token).run(job(server, prompt=name), on_event=events.append,
                                                      destination=tmp_path / f"{name}.nrrd")
        queued[name] = [e["position"] for e in events if e["event"] == "queued"]

    threads = [threading.Thread(target=one, args=(name,)) for name in ("cell", "nucleus")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert {f["event"] for f in finals.values()} == {"result"}, finals
    assert max(p[0] for p in queued.values()) == 1  # one of them waited behind the other
    assert all((tmp_path / f"{name}.nrrd").exists() for name in ("cell", "nucleus"))
    assert [s["name"] for s in finals["nucleus"]["segments"]] in ([], ["nucleus"])


def test_two_prompts_give_two_named_segments_over_http(server, tmp_path):
    """The planted model at the shipped defaults: "lesion" names the bright lesion, "healthy
    tissue" the body around it; both come back as named segments of one labelmap."""
    client = server["client"]
    write(ct_volume(3, 40, {1: 0.08}), tmp_path / "ct.nrrd")
    request = job(server, input=None, prompt=None, prompts=["lesion", "healthy tissue"], model="planted",
                  params={"proposals": "shared"}, pipeline={"intensity": "ct-soft-tissue"})
    events = []
    final = client.run(request, image=tmp_path / "ct.nrrd", on_event=events.append, destination=tmp_path / "s.nrrd")
    assert final["event"] == "result", final
    assert [e["done"] for e in events if e.get("stage") == "prompts"] == [1, 2]
    names = {s["label"]: s["name"] for s in final["segments"]}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s.nrrd")))
    assert names == {1: "lesion", 2: "healthy tissue"} and set(np.unique(labels)) == {0, 1, 2}
    assert dice(labels == 1, truth_of(tmp_path / "ct.nrrd", "ct-soft-tissue")) >= 0.85
    assert (labels == 2).sum() > 10 * (labels == 1).sum()


def test_client_needs_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import DiffusionSegLib.serve.client; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    third_party = {name.split(".")[0] for name in loaded} - set(sys.stdlib_module_names) - {"DiffusionSegLib"}
    assert not third_party, third_party


def test_other_hosts_are_warned_about_and_an_orphaned_server_stops(tmp_path):
    """--host other than loopback warns on stderr; --exit-with-parent stops the server when the
    process that started it (Slicer) is gone, even killed."""
    import signal
    import subprocess
    import sys
    import time

    from serve_helpers import ROOT, SERVE_ENV, read_ready

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    server = subprocess.Popen([sys.executable, "-m", "DiffusionSegLib", "serve", "--host", "0.0.0.0",
                               "--token-file", str(tmp_path / "token"), "--exit-with-parent", str(parent.pid)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **SERVE_ENV})
    try:
        ready = read_ready(server)
        assert ready["port"] > 0
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.poll() is not None, "the orphaned server kept running"
        assert "warning: serving on 0.0.0.0" in server.stderr.read()
    finally:
        for process in (parent, server):
            if process.poll() is None:
                process.kill()
                process.wait()
