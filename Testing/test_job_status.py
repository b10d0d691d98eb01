"""The status model the Slicer panel and the web app share (DiffusionSegSlicerLib/JobStatus.py):
slices done out of the total with an estimate, stages as a sub-line, warnings once, errors with a
hint for the front end and the details in the log, never JSON in the status line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib.JobStatus import ERROR_HINTS, JobStatus, peopleError
from DiffusionSegSlicerLib.Signal import Signal
from DiffusionSegSlicerLib.WorkerJob import JobFailed, WorkerJob


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Job:
    SUCCEEDED, FAILED, CANCELLED = WorkerJob.SUCCEEDED, WorkerJob.FAILED, WorkerJob.CANCELLED

    def __init__(self):
        self.progress, self.log, self.finished = Signal("p"), Signal("l"), Signal("f")
        self.state, self.segmentIds, self.warnings, self.error = "running", [], [], None
        self.segmentationNode = SimpleNamespace(GetName=lambda: "CT liver")


def started(frontEnd="slicer", prompts=1):
    clock, job = Clock(), Job()
    status = JobStatus(frontEnd, clock)
    views = []
    status.changed.connect(lambda s: views.append(s.view()))
    status.start(job, prompts)
    return status, job, clock, views


def test_slices_elapsed_and_an_estimate_from_the_slice_rate():
    status, job, clock, _ = started()
    assert status.view().state == "starting" and status.view().fraction is None
    job.progress.emit("load", 0, 1, 0.0)
    assert status.view().stage == "Loading the model" and status.view().state == "running"
    clock.now += 30                                   # loading the model: not part of the slice rate
    job.progress.emit("segment", 0, 40, 30.0)
    assert status.view().stage == "" and status.view().remaining is None
    clock.now += 10
    job.progress.emit("inversion", 7, 15, 40.0)
    assert status.view().stage == "Inverting the slice to the diffusion timestep: 7/15"
    assert (status.view().slicesDone, status.view().slicesTotal) == (0, 40)   # the bar does not refill per stage
    clock.now += 10
    job.progress.emit("segment", 4, 40, 50.0)
    view = status.view()
    assert (view.slicesDone, view.slicesTotal, view.fraction) == (4, 40, 0.1)
    assert view.remaining == pytest.approx(20 / 4 * 36) and view.elapsed == 50
    assert view.progressLine() == "4 of 40 slices · 50 s elapsed · about 3:00 left"
    job.progress.emit("segment", 40, 40, 90.0)
    assert status.view().stage == "Deciding over the whole volume and writing the result"


def test_several_prompts_count_every_pass_over_the_slices():
    status, job, clock, _ = started(prompts=2)
    job.progress.emit("segment", 0, 10, 0.0)
    clock.now += 10
    job.progress.emit("segment", 10, 10, 10.0)
    assert status.view().stage == ""                  # the second prompt's pass is still to come
    job.progress.emit("prompts", 1, 2, 10.0)
    job.progress.emit("segment", 0, 10, 10.0)
    clock.now += 5
    job.progress.emit("segment", 5, 10, 15.0)
    view = status.view()
    assert (view.slicesDone, view.slicesTotal) == (15, 20) and view.remaining == pytest.approx(15 / 15 * 5)


def test_warnings_once_and_the_log_holds_what_the_status_line_must_not():
    status, job, clock, _ = started()
    request = 'DiffusionSeg job: method adzus, request {"input": "/tmp/DiffusionSeg-x/input.nrrd"}'
    job.log.emit("info", request)
    job.log.emit("warning", "The result covers 97 % of the tissue.")
    job.warnings.append("The result covers 97 % of the tissue.")   # the same warning as an event
    job.segmentIds = ["liver"]
    job.state = job.SUCCEEDED
    clock.now += 65
    job.finished.emit(job)
    view = status.view()
    assert view.state == "succeeded" and view.message == "Done in 1:05: 1 segment(s) added to 'CT liver'."
    assert view.warnings == ["The result covers 97 % of the tissue."]
    assert request in status.logLines and "{" not in view.message + view.stage
    job.log.emit("warning", "late")    # the job is no longer followed
    assert status.view().warnings == view.warnings
    status.reset()
    assert status.view().state == "idle" and status.view().warnings == [] and status.logLines == []


@pytest.mark.parametrize("frontEnd", ["slicer", "browser"])
def test_errors_get_a_hint_for_their_front_end_and_details_in_the_log(frontEnd):
    status, job, _, _ = started(frontEnd)
    message = ("Could not reach the Hugging Face hub (https://huggingface.co: timed out) and "
               "'CompVis/stable-diffusion-v1-4' is not in the cache (/root/.cache/huggingface/hub).")
    hint = "On a machine with internet run `hf download ...` and set HF_HUB_OFFLINE=1; or pass --model."
    job.state, job.error = job.FAILED, JobFailed("model_not_found", message, hint, 4)
    job.finished.emit(job)
    view = status.view()
    assert view.state == "failed" and view.message.startswith("Failed after")
    assert "--model" not in view.hint and "HF_HUB_OFFLINE" not in view.hint + view.error
    assert hint in "\n".join(status.logLines) and message in "\n".join(status.logLines)
    if frontEnd == "browser":   # no server paths and no shell advice in the page
        assert view.error == "The server does not have this model and cannot download it."
        assert "administrator" in view.hint
    else:
        assert view.error == message and "Leave Model empty" in view.hint


def test_every_error_code_has_both_hints_and_unknown_codes_fall_back():
    for code, entry in ERROR_HINTS.items():
        assert entry.get("slicer") and entry.get("browser"), code
    assert peopleError("brand_new", "It broke.", "Run it with --verbose.", "browser") == (
        "It broke.", ERROR_HINTS["*"]["browser"])
    # a worker crash's own hint (its traceback) is what a Slicer user needs
    assert peopleError("unknown_crash", "It broke.", "Traceback ...", "slicer") == ("It broke.", "Traceback ...")


def test_cancel_and_a_start_that_failed():
    status, job, clock, _ = started()
    status.cancelling()
    assert status.view().message == "Cancelling…" and status.view().active
    job.state = job.CANCELLED
    clock.now += 3
    job.finished.emit(job)
    assert status.view().message == "Cancelled after 3 s; nothing was changed." and not status.view().active
    status.startFailed("DiffusionSeg could not start: the slice range 9 to 3 is empty.")
    view = status.view()
    assert view.state == "failed" and view.error.endswith("is empty.") and "Nothing was run" in view.hint
    with pytest.raises(ValueError):
        JobStatus("terminal")
