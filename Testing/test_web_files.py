"""The web app's private folder: upload limits, zip handling, server-path confinement, removal."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

pytest.importorskip("trame_slicer")

from DiffusionSegWeb.__main__ import isLoopback  # noqa: E402
from DiffusionSegWeb.files import UploadRefused, Workspace  # noqa: E402


def upload(name: str, content: bytes) -> dict:
    return {"name": name, "size": len(content), "content": content}


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(maxUploadBytes=1000, allowedRoots=[tmp_path / "allowed"])
    yield ws
    ws.remove()


def test_private_folder_and_files_are_owner_only(workspace):
    assert stat.S_IMODE(os.stat(workspace.root).st_mode) == 0o700
    [path] = workspace.receiveUpload([upload("ct.nrrd", b"x" * 10)])
    assert path.parent.parent == workspace.root
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    workspace.remove()
    assert not workspace.root.exists()


def test_upload_over_the_limit_is_refused_before_writing(workspace):
    with pytest.raises(UploadRefused, match="at most"):
        workspace.receiveUpload([upload("ct.nrrd", b"x" * 600), upload("mr.nii.gz", b"y" * 600)])
    assert list(workspace.root.iterdir()) == []


def test_browser_file_names_cannot_leave_the_folder(workspace):
    [path] = workspace.receiveUpload([upload("../../etc/evil.nrrd", b"x")])
    assert path.name == "evil.nrrd" and workspace.root in path.parents


def test_unsupported_file_type_is_refused(workspace):
    with pytest.raises(UploadRefused, match="not a supported image"):
        workspace.receiveUpload([upload("notes.txt", b"x")])


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def test_zipped_series_is_flattened_inside_the_folder(workspace, tmp_path):
    data = _zip(tmp_path / "series.zip", {"../escape.dcm": b"a", "sub/dir/IM2.dcm": b"b", "IM1.dcm": b"c"})
    paths = workspace.receiveUpload([upload("series.zip", data)])
    assert sorted(p.name.split("-", 1)[1] for p in paths) == ["IM1.dcm", "IM2.dcm", "escape.dcm"]
    assert all(workspace.root in p.parents for p in paths)
    assert not (workspace.root / "escape.dcm").exists()


def test_zip_bomb_is_refused_by_its_unpacked_size(workspace, tmp_path):
    data = _zip(tmp_path / "bomb.zip", {"IM1.dcm": b"\0" * 5000})   # compresses to far under the limit
    assert len(data) < 1000
    with pytest.raises(UploadRefused, match="unpacks to"):
        workspace.receiveUpload([upload("bomb.zip", data)])


def test_server_paths_only_under_allowed_roots(workspace, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ct.nrrd").write_bytes(b"x")
    (tmp_path / "secret.nrrd").write_bytes(b"x")
    assert workspace.serverPath(str(allowed / "ct.nrrd")) == [(allowed / "ct.nrrd").resolve()]
    for outside in (tmp_path / "secret.nrrd", allowed / ".." / "secret.nrrd"):
        with pytest.raises(UploadRefused, match="outside the folders"):
            workspace.serverPath(str(outside))
    (allowed / "link.nrrd").symlink_to(tmp_path / "secret.nrrd")
    with pytest.raises(UploadRefused, match="outside the folders"):
        workspace.serverPath(str(allowed / "link.nrrd"))


def test_server_paths_off_without_allowed_roots(tmp_path):
    ws = Workspace(maxUploadBytes=1000)
    try:
        with pytest.raises(UploadRefused, match="--allow-root"):
            ws.serverPath(str(tmp_path))
    finally:
        ws.remove()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("10.1.2.3", False), ("gpu-host", False)])
def test_only_loopback_hosts_go_without_a_warning(host, loopback):
    assert isLoopback(host) is loopback


def test_signal_handlers_are_restored_after_removal(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    ws = Workspace(maxUploadBytes=1000)
    assert signal.getsignal(signal.SIGTERM) != before
    ws.remove()
    assert signal.getsignal(signal.SIGTERM) == before and not ws.root.exists()
