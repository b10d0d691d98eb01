"""`batch --dicomweb … --store` against a real Orthanc with its DICOMweb plugin: one SEG per image
series stored in the study, non-image and localizer series skipped, a second run storing nothing,
server errors failing only their case, and no retrieved series left on disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_data import write_series
from fake_methods import fake_cli_command
from orthanc import PASSWORD, USER, available, running_orthanc, statistics

from DiffusionSegLib.contract.errors import EXIT_CASES_FAILED
from DiffusionSegLib.io.dicom_seg import SegInfo, read_seg_labels, stage_seg
from DiffusionSegLib.io.images import read_volume

pytestmark = pytest.mark.skipif(not available(), reason="Orthanc and its DICOMweb plugin are not installed")
ROOT = Path(__file__).resolve().parents[1]
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def dicomweb(url: str):
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    return DICOMwebClient(url, session=create_session_from_user_pass(USER, PASSWORD))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """One Orthanc for the module, holding a study with a CT series (and a localizer image), an MR
    series, a series of localizers only and an earlier SEG; and a second study whose only series
    misses a slice."""
    base = tmp_path_factory.mktemp("pacs")
    ct = write_series(base / "ct", localizer=True)
    mr = write_series(base / "mr", modality="MR", study=ct.study, number=4)
    scout = write_series(base / "scout", study=ct.study, slices=2, number=1)
    for path in scout.files:  # a localizer series: every image says LOCALIZER
        ds = pydicom.dcmread(path)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(path)
    earlier = stage_seg((read_volume(mr.folder).array > 600).astype(np.uint8), read_volume(mr.folder).dicom,
                        [{"label": 1, "name": "lesion"}], SegInfo("earlier", None, "0", identity="earlier"),
                        base / "earlier.dcm").commit()
    broken = write_series(base / "broken", drop=3)
    with running_orthanc(base / "orthanc") as server:
        client = dicomweb(server["url"])
        files = [*ct.folder.glob("*.dcm"), *mr.files, *scout.files, earlier, *broken.files]
        response = client.store_instances([pydicom.dcmread(p) for p in files])
        assert not response.get("FailedSOPSequence")
        (base / "token").write_text(f"{USER}:{PASSWORD}\n")
        yield {**server, "client": client, "ct": ct, "mr": mr, "broken": broken, "token": base / "token",
               "base": base}


def seg_instances(client, study: str) -> list[dict]:
    return [i for i in client.search_for_instances(study_instance_uid=study, fields=["00080016"])
            if i["00080016"]["Value"][0] == SEG_STORAGE]


def batch(pacs, tmp_path: Path, out: Path, *extra: str) -> tuple[int, list[dict], dict]:
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    done = subprocess.run(fake_cli_command("batch", "--dicomweb", pacs["url"], "--token-file", str(pacs["token"]),
                                           "--method", "bright-threshold", "--prompt", "lesion", "--param",
                                           "threshold=0.7", "--device", "cpu", "--output-dir", str(out), *extra),
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert not list((tmp_path / "tmp").iterdir()), "a retrieved series was left behind"
    rows = {r["case"]: r for r in json.loads((out / "summary.json").read_text())["cases"]}
    return done.returncode, events, rows


def test_store_one_seg_per_image_series_and_nothing_twice(pacs, tmp_path):
    client, ct, mr = pacs["client"], pacs["ct"], pacs["mr"]
    before = seg_instances(client, ct.study)
    assert len(before) == 1   # the earlier SEG
    out = tmp_path / "out"

    code, events, rows = batch(pacs, tmp_path, out, "--study", ct.study, "--store")
    assert code == 0, events[-3:]
    assert set(rows) == {f"{ct.study}/{ct.series}", f"{ct.study}/{mr.series}"}     # SEG and localizers skipped
    logs = " ".join(e["message"] for e in events if e["event"] == "log")
    assert "(SEG) skipped: not an image series" in logs and "localizer images only" in logs
    stored = seg_instances(client, ct.study)
    assert len(stored) == 3
    for series in (ct, mr):
        row = rows[f"{ct.study}/{series.series}"]
        assert row["status"] == "ok" and row["voxels"] > 0 and row["stored"] and not row["stored_before"]
        local = out / ct.study / f"{series.series}.dcm"
        uploaded = client.retrieve_instance(ct.study, pydicom.dcmread(local).SeriesInstanceUID, row["stored"])
        assert uploaded.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series
        labels, segments = read_seg_labels(local, [str(pydicom.dcmread(p).SOPInstanceUID) for p in series.files])
        assert int(labels.sum()) == row["voxels"] and segments == [{"label": 1, "name": "lesion"}]
        record = json.loads((out / ct.study / f"{series.series}.provenance.json").read_text())
        assert record["request"]["input"].startswith(f"dicomweb:{pacs['url']}/studies/{ct.study}/series/")
    counts = statistics(pacs["rest"])

    code, events, again = batch(pacs, tmp_path, out, "--study", ct.study, "--store")
    assert code == 0
    assert {r["status"] for r in again.values()} == {"skipped"}
    assert statistics(pacs["rest"]) == counts and len(seg_instances(client, ct.study)) == 3

    # The summary lost: the same results are computed again, found in the study, not sent twice.
    code, events, lost = batch(pacs, tmp_path, tmp_path / "elsewhere", "--study", ct.study, "--store")
    assert code == 0 and all(r["stored_before"] for r in lost.values())
    assert statistics(pacs["rest"]) == counts


def test_server_errors_fail_their_case_and_the_run_goes_on(pacs, tmp_path):
    ct, broken = pacs["ct"], pacs["broken"]
    code, _, rows = batch(pacs, tmp_path, tmp_path / "out", "--study", ct.study, "--study", "1.2.3.999",
                          "--study", broken.study)
    assert code == EXIT_CASES_FAILED
    assert rows["1.2.3.999"]["error_code"] == "dicomweb_failed"
    assert "not on the DICOMweb server" in rows["1.2.3.999"]["error_message"]
    failed = rows[f"{broken.study}/{broken.series}"]
    assert failed["error_code"] == "invalid_image" and "slice(s) missing" in failed["error_message"]
    assert rows[f"{ct.study}/{ct.series}"]["status"] == "ok"     # the run went on



@pytest.mark.parametrize("server,token,expected", [
    ("pacs", "reader:wrong", "refused the credentials (HTTP 401)"),
    ("http://127.0.0.1:9/dicom-web", None, "cannot be reached"),
])
def test_unreachable_or_refusing_server_fails_each_study_before_any_model(pacs, tmp_path, server, token, expected):
    from DiffusionSegLib.batch.dicomweb import Server, client, study_cases
    from DiffusionSegLib.batch.manifest import Defaults

    if token:
        (tmp_path / "token").write_text(token)
    url = pacs["url"] if server == "pacs" else server
    client.cache_clear()
    cases = study_cases(Server(url, str(tmp_path / "token") if token else None), [({"study": pacs["ct"].study}, "x")],
                        Defaults(method="bright-threshold", output_dir=tmp_path, output_suffix=".dcm"), True, print)
    assert len(cases) == 1 and cases[0].case == pacs["ct"].study
    code, message = cases[0].remote["error"]
    assert code == "dicomweb_failed" and expected in message
