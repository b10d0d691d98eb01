"""Out of memory: the batch is halved down to one slice, then the job ends with a clear
`out_of_memory` error; it never moves to another device and writes nothing."""

from __future__ import annotations

import pytest
import SimpleITK as sitk
from fake_methods import BrightThreshold
from helpers import ct_like_volume

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import OutOfMemory
from DiffusionSegLib.contract.events import error_for
from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.jobs.runner import Runner
from DiffusionSegLib.methods.base import MethodInfo


class MemoryHungry(BrightThreshold):
    """Raises the allocator's out-of-memory error for batches above `fits` slices."""

    info = MethodInfo(name="memory-hungry", label="OOM (test)", description="test", prompt="none",
                      needs_checkpoint=False, default_model=None, params=BrightThreshold.info.params)
    fits = 1
    calls: list = []

    def segment(self, images, valid, indices=None):
        type(self).calls.append((images.shape[0], self.context.device))
        if images.shape[0] > self.fits:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().segment(images, valid)


@pytest.fixture()
def hungry(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", {**registry.available_methods(), "memory-hungry": MemoryHungry})
    MemoryHungry.calls = []
    sitk.WriteImage(ct_like_volume(size=(30, 26, 6)), str(tmp_path / "ct.nrrd"))
    return JobRequest(input=str(tmp_path / "ct.nrrd"), output=str(tmp_path / "seg.nrrd"), method="memory-hungry",
                      device="cpu", pipeline=PipelineOptions(batch_size=4, intensity="ct-abdomen"))


def test_batch_is_halved_until_it_fits(hungry, monkeypatch, tmp_path):
    monkeypatch.setattr(MemoryHungry, "fits", 1)
    events = []
    Runner().run(hungry, events.append)
    sizes = [size for size, _ in MemoryHungry.calls]
    assert sizes[:3] == [4, 2, 1] and set(sizes[3:]) == {1}
    assert {device for _, device in MemoryHungry.calls} == {"cpu"}  # never another device
    warnings = [e["message"] for e in events if e.get("level") == "warning"]
    assert any("batch size 2" in w for w in warnings) and any("batch size 1" in w for w in warnings)
    assert (tmp_path / "seg.nrrd").exists()


def test_out_of_memory_for_one_slice_is_a_clear_error(hungry, monkeypatch, tmp_path):
    monkeypatch.setattr(MemoryHungry, "fits", 0)
    with pytest.raises(OutOfMemory) as error:
        Runner().run(hungry, lambda e: None)
    event, status = error_for(error.value)
    assert event["code"] == "out_of_memory" and "one slice" in event["message"] and event["hint"]
    assert status == OutOfMemory.exit_code
    assert [size for size, _ in MemoryHungry.calls] == [4, 2, 1]
    assert not (tmp_path / "seg.nrrd").exists()
