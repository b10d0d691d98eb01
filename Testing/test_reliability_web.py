"""Reliability round 3 (issue 23), the browser app's private folder: limits by the bytes that
arrived (not the size a browser declares), zips bounded by member count and size before anything
is extracted, refused uploads leave nothing, earlier uploads go when a new volume replaces them,
and the folder has a total quota."""

from __future__ import annotations

import zipfile

import pytest

pytest.importorskip("trame_slicer")

from DiffusionSegWeb.files import UploadRefused, Workspace  # noqa: E402


@pytest.fixture
def workspace():
    ws = Workspace(maxUploadBytes=1000, maxTotalBytes=2500)
    yield ws
    ws.remove()


def files_in(ws: Workspace) -> list[str]:
    return sorted(str(p.relative_to(ws.root)) for p in ws.root.rglob("*") if p.is_file())


@pytest.mark.parametrize("content", [b"x" * 20_000, [b"x" * 10_000, b"y" * 10_000]], ids=["whole", "chunked"])
def test_a_declared_size_is_not_what_counts(workspace, content):
    """20 kB declared as 1 byte, whole or in chunks, under a 1 kB limit."""
    with pytest.raises(UploadRefused, match="at most"):
        workspace.receiveUpload([{"name": "ct.nrrd", "size": 1, "content": content}])
    assert files_in(workspace) == []


def test_the_chunk_collector_counts_bytes_received():
    from DiffusionSegWeb.files import UploadCollector

    collector = UploadCollector(1000)
    assert collector.add([{"name": "a.dcm", "size": 1, "content": b"x" * 600}]) is None
    refusal = collector.add([{"name": "b.dcm", "size": 1, "content": [b"y" * 300, b"z" * 300]}])
    assert refusal and "over this server's limit of 1.0 kB" in refusal
    assert collector.add([{"name": "c.dcm", "size": 1, "content": b"w"}]) is None   # the rest is dropped
    assert collector.finish() == []                                                 # nothing of it is opened
    assert collector.add([{"name": "d.dcm", "size": 99_999, "content": b"v" * 10}]) is None
    assert [f["name"] for f in collector.finish()] == ["d.dcm"]                     # the next upload is fresh


def test_a_zip_of_many_members_is_refused_before_extraction(tmp_path):
    ws = Workspace(maxUploadBytes=10_000_000)
    try:
        path = tmp_path / "many.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for n in range(9000):
                archive.writestr(f"IM{n:05d}.dcm", b"")
        assert path.stat().st_size < 1_100_000
        with pytest.raises(UploadRefused, match="holds 9000 files"):
            ws.receiveUpload([{"name": "many.zip", "content": path.read_bytes()}])
        assert files_in(ws) == []
    finally:
        ws.remove()


def test_a_zip_that_unpacks_to_more_than_it_declares_is_cut_off(tmp_path, workspace):
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("IM1.dcm", b"a" * 100)
        archive.writestr("IM2.dcm", b"b" * 100)
    data = bytearray(path.read_bytes())
    # the central directory's uncompressed sizes say 10 bytes each: the archive's word, not its content
    for name in (b"IM1.dcm", b"IM2.dcm"):
        at = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
        data[at + 24:at + 28] = (10).to_bytes(4, "little")
    with pytest.raises(UploadRefused):
        workspace.receiveUpload([{"name": "liar.zip", "content": bytes(data)}])
    assert files_in(workspace) == []


def test_a_refused_upload_leaves_nothing(workspace):
    with pytest.raises(UploadRefused, match="not a supported image"):
        workspace.receiveUpload([{"name": "ct.nrrd", "content": b"x" * 10}, {"name": "notes.txt", "content": b"y"}])
    assert files_in(workspace) == [] and list(workspace.root.iterdir()) == []


def test_earlier_uploads_go_when_a_new_volume_replaces_them(workspace):
    first = workspace.receiveUpload([{"name": "first.nrrd", "content": b"1" * 500}])
    second = workspace.receiveUpload([{"name": "second.nrrd", "content": b"2" * 500}])
    assert len(files_in(workspace)) == 2
    workspace.releaseEarlier(second)   # what the app does once `second` is the scene's volume
    assert files_in(workspace) == [str(second[0].relative_to(workspace.root))]
    assert not first[0].exists()


def test_the_private_folder_has_a_total_quota(workspace):
    workspace.receiveUpload([{"name": "a.nrrd", "content": b"a" * 900}])
    workspace.receiveUpload([{"name": "b.nrrd", "content": b"b" * 900}])
    with pytest.raises(UploadRefused, match="does not fit"):
        workspace.receiveUpload([{"name": "c.nrrd", "content": b"c" * 900}])   # 2.7 kB > 2.5 kB
    assert len(files_in(workspace)) == 2
    workspace.releaseEarlier([])   # a new volume from a server path replaced them
    workspace.receiveUpload([{"name": "c.nrrd", "content": b"c" * 900}])
