"""A real Orthanc PACS with its DICOMweb plugin for the tests (Debian packages orthanc and
orthanc-dicomweb; .ci/run installs them): started on a free 127.0.0.1 port with its own
temporary storage and configuration, HTTP basic authentication, and stopped afterwards."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "reader", "not-a-secret"


def available() -> bool:
    return ORTHANC.is_file() and DICOMWEB_PLUGIN.is_file()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> bytes:
    token = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


@contextmanager
def running_orthanc(folder: Path) -> Iterator[dict]:
    """{"url": DICOMweb root, "rest": Orthanc REST root, "log": log file}; Orthanc is stopped
    (and its storage left to the caller's temporary folder) when the block ends."""
    port = free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    config = {
        "Name": "DiffusionSegTest", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)], "HttpThreadsCount": 4, "ConcurrentJobs": 1,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    log = open(folder / "orthanc.log", "w")
    process = subprocess.Popen([str(ORTHANC), str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    rest = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{rest}/system")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield {"url": f"{rest}/dicom-web", "rest": rest, "log": folder / "orthanc.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def statistics(rest: str) -> dict:
    """Orthanc's counts of patients, studies, series and instances."""
    return json.loads(_get(f"{rest}/statistics"))
