"""DICOMweb cohorts: studies in a PACS in, one DICOM SEG per image series back into the study.

QIDO-RS lists each study's series (before any model loads) and skips what is not an image to
segment (SEG, SR, presentation states … and series made only of localizers); every image series
becomes one case. A worker retrieves its series with WADO-RS into a private temporary folder,
runs the job on it and removes the folder whatever happens; with `--store` it sends the SEG back
with STOW-RS. The SEG's UIDs are derived from the series, the request and the labels
(io/dicom_seg.py), and a SEG already in the study is not sent again, so nothing is stored twice,
even when the run's summary was lost.

A server's failure (unreachable, 401/403, an unknown study, a series that cannot be read) fails
that case with a message saying what the server answered; the run goes on.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from ..contract.errors import DiffusionSegError, InvalidRequest, RemoteFailed, StoreFailed
from ..io.bundle import stage_json
from ..io.input_checks import rules
from .manifest import Case, Defaults, validate_case

TIMEOUT_S = (10.0, 300.0)      # connect, read: a silent server fails the case instead of hanging the run
RETRY_ATTEMPTS, RETRY_WAIT_MS = 3, 500   # a busy server (429, 503 …) or a dropped connection: ~3 s of retries
MODALITY, DESCRIPTION, INSTANCES, IMAGE_TYPE = "00080060", "0008103E", "00201209", "00080008"
SERIES_UID, SOP_UID = "0020000E", "00080018"
PREFIX = "dicomweb:"


@dataclass(frozen=True)
class Server:
    url: str
    token_file: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "token_file": self.token_file}


def _auth(token_file: str | None) -> dict[str, Any]:
    """Credentials from a file (never the command line, where `ps` shows them): a line
    'Bearer …' or 'Basic …' is sent as the Authorization header, 'user:password' as HTTP basic
    authentication, anything else as a bearer token."""
    if not token_file:
        return {}
    path = Path(token_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidRequest(f"Cannot read the token file {path}: {exc.strerror}.") from None
    if not text:
        raise InvalidRequest(f"The token file {path} is empty.")
    if text.split(" ", 1)[0] in ("Bearer", "Basic"):
        return {"headers": {"Authorization": text}}
    if ":" in text and " " not in text:
        user, _, password = text.partition(":")
        return {"auth": (user, password)}
    return {"headers": {"Authorization": f"Bearer {text}"}}


@lru_cache(maxsize=8)
def client(url: str, token_file: str | None) -> Any:
    """A dicomweb-client for the server (one per worker and server)."""
    try:
        import requests
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise InvalidRequest("--dicomweb needs dicomweb-client, which is not installed.",
                             hint='Install it with `pip install -e ".[dicom]"`.') from None

    class Session(requests.Session):
        def request(self, *args, **kwargs):  # type: ignore[override]
            kwargs.setdefault("timeout", TIMEOUT_S)
            return super().request(*args, **kwargs)

    session = Session()
    auth = _auth(token_file)
    session.headers.update(auth.get("headers", {}))
    session.auth = auth.get("auth")
    dw = DICOMwebClient(url.rstrip("/"), session=session)
    dw.set_http_retry_params(retry=True, max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=RETRY_WAIT_MS)
    return dw


def explain(error: BaseException, what: str, url: str) -> RemoteFailed:
    """One clear message for whatever the server (or the network) did."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 403):
        return RemoteFailed(f"{what}: the DICOMweb server at {url} refused the credentials (HTTP {status}).",
                            hint="Check --token-file: a bearer token, 'Bearer …', 'Basic …' or user:password.")
    if status == 404:
        return RemoteFailed(f"{what}: not found on the DICOMweb server at {url} (HTTP 404).",
                            hint="Check the UID and the server's DICOMweb root (e.g. http://host:8042/dicom-web).")
    if status is not None:
        return RemoteFailed(f"{what}: the DICOMweb server at {url} answered HTTP {status}.")
    name = type(error).__name__
    if "Connection" in name or "Timeout" in name:
        return RemoteFailed(f"{what}: the DICOMweb server at {url} cannot be reached ({name}).",
                            hint="Check the URL, that the server runs, and the network.")
    return RemoteFailed(f"{what}: {name}: {str(error)[:300]}")


def _value(item: dict, tag: str, default: Any = "") -> Any:
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


def image_series(server: Server, study: str) -> tuple[list[dict], list[str]]:
    """(image series of the study as {series, modality, description, instances}, what was
    skipped and why). Raises RemoteFailed for a server error or a study the server does not know."""
    dw = client(server.url, server.token_file)
    where = f"Study {study}"
    try:
        found = dw.search_for_series(study_instance_uid=study, fields=[MODALITY, DESCRIPTION, INSTANCES])
    except Exception as error:  # noqa: BLE001 - requests/HTTP errors of every kind: explained
        raise explain(error, where, server.url) from None
    if not found:
        raise RemoteFailed(f"{where} is not on the DICOMweb server at {server.url} (no series found).",
                           hint="Check the StudyInstanceUID.")
    images, skipped = [], []
    for item in found:
        series, modality = str(_value(item, SERIES_UID)), str(_value(item, MODALITY))
        entry = {"series": series, "modality": modality, "description": str(_value(item, DESCRIPTION)),
                 "instances": int(_value(item, INSTANCES, 0) or 0)}
        if modality.upper() in rules()["non_image_modalities"]:
            skipped.append(f"{where}: series {series} ({modality}) skipped: not an image series.")
        elif _only_localizers(dw, study, series):
            skipped.append(f"{where}: series {series} ({modality}) skipped: localizer images only.")
        else:
            images.append(entry)
    return images, skipped


def _only_localizers(dw: Any, study: str, series: str) -> bool:
    try:
        instances = dw.search_for_instances(study_instance_uid=study, series_instance_uid=series, fields=[IMAGE_TYPE])
    except Exception:  # noqa: BLE001 - decided when the series is read instead
        return False
    localizer = rules()["localizer_image_types"]
    types = [item.get(IMAGE_TYPE, {}).get("Value") or [] for item in instances]
    return bool(types) and all(any(str(v).upper() in localizer for v in t) for t in types)


def study_cases(server: Server, studies: list[tuple[dict, str]], defaults: Defaults, store: bool,
                log: Callable[[str], None]) -> list[Case]:
    """One case per image series of each study row ({"study", "case"?, "method" …}, source);
    a study the server cannot list becomes one failed case, so the run goes on."""
    from .manifest import case_from_row

    cases = []
    for row, source in studies:
        study = str(row["study"]).strip()
        prefix = str(row.get("case") or study)
        remote = {**server.describe(), "study": study, "store": store}
        base = {k: v for k, v in row.items() if k not in ("study", "case", "output", "image")}
        try:
            series_list, skipped = image_series(server, study)
        except RemoteFailed as error:
            series_list, skipped = [], []
            row_case = case_from_row({**base, "case": prefix, "image": f"{PREFIX}{server.url}/studies/{study}",
                                      "output": f"{prefix}{defaults.output_suffix}"}, source, Path("."), defaults)
            request = {**row_case.request, "input": f"{PREFIX}{server.url}/studies/{study}"}
            cases.append(Case(prefix, request, source, row_case.output_name,
                              remote={**remote, "error": [error.code, str(error)]}))
        for line in skipped:
            log(line)
        for entry in series_list:
            name = f"{prefix}/{entry['series']}"
            made = case_from_row({**base, "case": name, "image": "unused", "output": f"{name}{defaults.output_suffix}"},
                                 source, Path("."), defaults)
            request = {**made.request, "input": f"{PREFIX}{server.url}/studies/{study}/series/{entry['series']}"}
            case = Case(name, request, f"{source} series {entry['series']}", made.output_name,
                        remote={**remote, "series": entry["series"]})
            validate_case(case)
            cases.append(case)
    return cases


@contextlib.contextmanager
def case_request(case: Case) -> Iterator[dict]:
    """The case's job request, runnable here: a DICOMweb case's series is retrieved into a
    private temporary folder (0700) that is removed when the case ends, whatever happens."""
    remote = case.remote
    if not remote:
        yield case.request
        return
    if remote.get("error"):
        raise RemoteFailed(remote["error"][1])
    folder = Path(tempfile.mkdtemp(prefix="diffusionseg-dicomweb-"))
    try:
        retrieve_series(remote, folder)
        yield {**case.request, "input": str(folder)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def retrieve_series(remote: dict, folder: Path) -> int:
    dw = client(remote["url"], remote.get("token_file"))
    where = f"Series {remote['series']} of study {remote['study']}"
    count = 0
    try:
        for count, dataset in enumerate(dw.iter_series(remote["study"], remote["series"]), start=1):
            dataset.save_as(folder / f"{count:06d}.dcm", enforce_file_format=True)
    except DiffusionSegError:
        raise
    except Exception as error:  # noqa: BLE001 - explained for the summary
        raise explain(error, where, remote["url"]) from None
    if count == 0:
        raise RemoteFailed(f"{where}: the DICOMweb server at {remote['url']} returned no instances.")
    return count


def store_seg(remote: dict, path: str | Path) -> dict[str, Any]:
    """STOW-RS the SEG into its study, unless an object with its SOP Instance UID is already
    there. Returns {"stored": UID, "stored_before": bool}."""
    import pydicom

    dataset = pydicom.dcmread(str(path))
    uid, study = str(dataset.SOPInstanceUID), remote["study"]
    dw = client(remote["url"], remote.get("token_file"))
    where = f"Storing the SEG of series {remote['series']} in study {study}"
    try:
        existing = dw.search_for_instances(study_instance_uid=study, search_filters={"SOPInstanceUID": uid})
        if any(str(_value(item, SOP_UID)) == uid for item in existing):
            return {"stored": uid, "stored_before": True}
        response = dw.store_instances([dataset], study_instance_uid=study)
    except Exception as error:  # noqa: BLE001 - explained for the summary
        explained = explain(error, where, remote["url"])
        raise StoreFailed(explained.message + f" The SEG stays in {path}; run the batch again to store it.",
                          hint=explained.hint) from None
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        reason = failed[0].get("FailureReason", "?")
        raise StoreFailed(f"{where}: the server refused it (failure reason {reason}). The SEG stays in {path}.")
    return {"stored": uid, "stored_before": False}


def record_source(provenance: str | Path, case: Case) -> None:
    """The job read a temporary copy of the series: its record names the series' DICOMweb
    address instead (rewritten through a verified staged write)."""
    import json

    path = Path(provenance)
    record = json.loads(path.read_text(encoding="utf-8"))
    record["request"]["input"] = case.request["input"]
    record["input"]["path"] = case.request["input"]
    record["input"]["retrieved_with"] = "WADO-RS into a temporary folder, removed after the case"
    stage_json(record, path).commit()
