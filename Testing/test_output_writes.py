"""The one output-writing path (issue 9, writes; issue 13, file modes and viewable pictures):
verified atomic writes, disk full, output == input, --overwrite, racing writers, umask, palette."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import fake_cli_command
from helpers import ct_like_volume

from DiffusionSegLib.contract.errors import (
    EXIT_WRITE_FAILED,
    InvalidRequest,
    OutputBusy,
    OutputExists,
    WriteFailed,
)
from DiffusionSegLib.io.images import read_volume, write_labelmap
from DiffusionSegLib.io.output_files import claim_output, claim_path, stage_file

ROOT = Path(__file__).resolve().parents[1]


def volume_file(folder: Path, name: str = "ct.nrrd") -> Path:
    path = folder / name
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(path))
    return path


def fake_cli(*args, preexec_fn=None, timeout=300) -> tuple[int, list[dict], str]:
    # utf-8 whatever locale a library left the test process in (events carry "×", "→" …)
    done = subprocess.run(fake_cli_command(*args), cwd=ROOT, capture_output=True, text=True, encoding="utf-8",
                          timeout=timeout, preexec_fn=preexec_fn)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def segment_args(source: Path, output: Path, *extra: str) -> list[str]:
    return ["segment", "--method", "bright-threshold", "--input", str(source), "--output", str(output),
            "--device", "cpu", "--param", "threshold=0.3", *extra]


def test_silent_short_write_is_write_failed_and_leaves_nothing(tmp_path):
    """SimpleITK reports success on a full disk and leaves a 0-byte or cut file: an injected
    writer doing exactly that must end as write_failed with nothing at the output path."""
    target = tmp_path / "seg.nrrd"
    with pytest.raises(WriteFailed, match="empty file"):
        stage_file(target, lambda temp: None, lambda temp: None, ".nrrd")   # 0 bytes, "no error"

    volume = read_volume(volume_file(tmp_path))
    good = tmp_path / "good.nrrd"
    write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, good)

    def truncating(temp: str) -> None:
        Path(temp).write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    from DiffusionSegLib.io import images as imageio

    original = imageio.sitk.WriteImage
    imageio.sitk.WriteImage = lambda image, temp, compress: truncating(temp)
    try:
        with pytest.raises(WriteFailed, match="incompletely|differs|voxels"):
            write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, target)
    finally:
        imageio.sitk.WriteImage = original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd", "good.nrrd"]


def _small_file_limit():   # a full disk as an unprivileged process sees it: writes past 200 bytes fail
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_disk_full_through_the_cli_gives_write_failed_and_no_file(tmp_path):
    source = volume_file(tmp_path)
    rc, events, stderr = fake_cli(*segment_args(source, tmp_path / "seg.nrrd"), preexec_fn=_small_file_limit)
    assert rc == EXIT_WRITE_FAILED, stderr[-2000:]
    assert events[-1]["event"] == "error" and events[-1]["code"] == "write_failed"
    assert "result" not in [e["event"] for e in events]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]   # no output, temp or claim file


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_output_equal_to_input_is_refused_before_any_work(tmp_path, link):
    source = volume_file(tmp_path)
    before = source.read_bytes()
    output = source
    if link == "symlink":
        output = tmp_path / "alias.nrrd"
        output.symlink_to(source)
    elif link == "hardlink":
        output = tmp_path / "alias.nrrd"
        os.link(source, output)
    rc, events, _ = fake_cli(*segment_args(source, output, "--overwrite"))
    assert rc == 2 and events[-1]["code"] == "invalid_request" and "same file" in events[-1]["message"]
    assert [e["event"] for e in events] == ["error"]   # refused before reading or loading anything
    assert source.read_bytes() == before


def test_existing_output_needs_overwrite(tmp_path):
    source = volume_file(tmp_path)
    output = tmp_path / "seg.nrrd"
    output.write_bytes(b"the user's own segmentation")
    rc, events, _ = fake_cli(*segment_args(source, output))
    assert rc == 2 and events[-1]["code"] == "output_exists" and "--overwrite" in events[-1]["hint"]
    assert output.read_bytes() == b"the user's own segmentation"
    request = {"version": 1, "input": str(source), "output": str(output), "method": "bright-threshold",
               "device": "cpu", "params": {"threshold": 0.3}, "overwrite": True}
    (tmp_path / "job.json").write_text(json.dumps(request))
    rc, events, stderr = fake_cli("run", "--request", str(tmp_path / "job.json"))
    assert rc == 0, stderr[-2000:]
    assert sitk.ReadImage(str(output)).GetSize() == (24, 20, 3)


def test_claim_is_exclusive_and_a_dead_owners_claim_is_taken_over(tmp_path):
    target = tmp_path / "seg.nrrd"
    with claim_output(target):
        with pytest.raises(OutputBusy, match=f"process {os.getpid()}"):
            with claim_output(target):
                pass
    assert not claim_path(target).exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    claim_path(target).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": 0}))
    with claim_output(target):   # its owner was killed: the claim is stale
        pass
    assert not claim_path(target).exists()


def test_two_jobs_racing_for_one_output_the_second_fails_clearly(tmp_path):
    source = volume_file(tmp_path)
    output = tmp_path / "seg.nrrd"
    slow = ["segment", "--method", "slow-load", "--input", str(source), "--output", str(output), "--device", "cpu",
            "--param", "load_seconds=20"]
    first = subprocess.Popen(fake_cli_command(*slow),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    try:
        for line in first.stdout:   # the first job holds the output once it is loading
            if json.loads(line).get("stage") == "load":
                break
        rc, events, _ = fake_cli(*segment_args(source, output))
        assert rc == 2 and events[-1]["code"] == "output_busy" and str(first.pid) in events[-1]["message"]
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, mask):
    volume = read_volume(volume_file(tmp_path))
    previous = os.umask(mask)
    try:
        out = write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, tmp_path / "seg.nrrd")
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask   # 0644 under 022, not mkstemp's 0600


def test_picture_labelmaps_are_viewable_and_volumes_keep_label_values(tmp_path):
    from DiffusionSegLib.io.formats import palette

    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (20, 30)).astype(np.uint8))
    one = np.zeros((1, 20, 30), np.uint8)
    one[0, 5:10, 5:10] = 1
    for suffix in (".png", ".bmp", ".tif"):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(write_labelmap(one, image, tmp_path / f"one{suffix}"))))
        written = written[..., 0] if written.ndim == 3 else written   # BMP reads back as grey RGB
        assert set(np.unique(written)) == {0, 255} and written[6, 6] == 255
    several = one.copy()
    several[0, 12:15, 20:25] = 3
    rgb = sitk.GetArrayFromImage(sitk.ReadImage(str(write_labelmap(several, image, tmp_path / "several.png"))))
    assert rgb.shape == (20, 30, 3)
    np.testing.assert_array_equal(rgb[6, 6], palette()[0])
    np.testing.assert_array_equal(rgb[13, 21], palette()[2])
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    kept = sitk.GetArrayFromImage(sitk.ReadImage(str(write_labelmap(several, image, tmp_path / "several.nrrd"))))
    assert set(np.unique(kept)) == {0, 1, 3}


def test_train_refuses_a_non_empty_output_folder_before_reading_data(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{\"validation\": {\"val_dice\": 0.904}}")
    started = time.monotonic()
    rc, events, _ = fake_cli("train", "sdseg", "--images", str(tmp_path / "none"), "--masks", str(tmp_path / "none"),
                             "--output", str(checkpoint))
    assert rc == 2 and events[-1]["code"] == "output_exists"
    assert "--resume" in events[-1]["hint"] and "--overwrite" in events[-1]["hint"]
    assert (checkpoint / "config.json").read_text() == "{\"validation\": {\"val_dice\": 0.904}}"
    # with --overwrite the refusal is gone: the run gets as far as reading the (missing) data
    rc, events, _ = fake_cli("train", "sdseg", "--images", str(tmp_path / "none"), "--masks", str(tmp_path / "none"),
                             "--output", str(checkpoint), "--overwrite")
    assert events[-1]["code"] != "output_exists" and rc != 0
    assert time.monotonic() - started < 600


def test_a_jpeg_named_png_says_what_it_is(tmp_path):
    from DiffusionSegLib.contract.errors import InvalidImage

    sitk.WriteImage(sitk.GetImageFromArray(np.full((20, 20), 99, np.uint8)), str(tmp_path / "x.jpg"))
    (tmp_path / "x.jpg").rename(tmp_path / "photo.png")
    with pytest.raises(InvalidImage, match=r"photo.png is a JPEG file.*Rename it to .jpg"):
        read_volume(tmp_path / "photo.png")


def test_a_fifo_as_input_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "input.nrrd"
    os.mkfifo(fifo)
    rc, events, _ = fake_cli(*segment_args(fifo, tmp_path / "seg.nrrd"), timeout=120)
    assert rc == 3 and events[-1]["code"] == "invalid_image" and "FIFO" in events[-1]["message"]


def test_refusals_name_the_problem(tmp_path):
    volume = read_volume(volume_file(tmp_path))
    (tmp_path / "dir.nrrd").mkdir()
    with pytest.raises(InvalidRequest, match="is a folder"):
        write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, tmp_path / "dir.nrrd")
    (tmp_path / "taken.nrrd").write_text("x")
    with pytest.raises(OutputExists):
        write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, tmp_path / "taken.nrrd", overwrite=False)
