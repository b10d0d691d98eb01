"""One Apply: the Slicer module's own service-backed job, polled from the page's event loop.

Nothing of the job is re-implemented here. `DiffusionSegLogic.createJob` (DiffusionSegSlicerLib)
gives a `ServiceSegmentationJob`: it checks the settings against the method metadata, exports the
volume through Slicer's storage node (so the result comes back on exactly the node's grid), sends
it to the service (by path to the local one, uploaded to a remote one), forwards its events,
downloads the labelmap (and the evidence bundle) and imports it with names, colours and standard
terminology, removing its temporary folder in every outcome. The Slicer panel drives it from a QTimer; the page drives it
from an asyncio task, and copies its signals into the page state.
"""

from __future__ import annotations

import asyncio
import logging
import time

from trame_server.utils.asynchronous import create_task

from .panel import paramKey
from .segments import segmentRows

log = logging.getLogger(__name__)
POLL_S = 0.1


class JobController:
    def __init__(self, app, logic, pythonInterpreter: str = ""):
        self.app = app
        self.logic = logic
        self.pythonInterpreter = pythonInterpreter
        self.job = None
        self.applyTime = self.lastProgressTime = 0.0
        app.segmentEditorLogic.segmentation_editor.segmentation_modified.connect(self.refreshSegments)

    @property
    def state(self):
        return self.app.state

    def settings(self):
        """The panel's choices as the module's JobSettings (prompts: one per line)."""
        from DiffusionSegSlicerLib.JobSettings import JobSettings

        state, method = self.state, self.state.ds_method
        info = self.app.methods[method]
        params = {p.name: state[paramKey(method, p.name)] for p in info.params}
        return JobSettings(method=method, prompt=state.ds_prompts or "", model=state.ds_model or "",
                           device=state.ds_device, params=params, axis=state.ds_axis,
                           intensity=state.ds_intensity, pythonInterpreter=self.pythonInterpreter)

    # -- Apply / Cancel --------------------------------------------------------------------------

    def start(self) -> None:
        if self.job is not None and self.job.isRunning():
            return
        self.state.ds_error = ""
        volume = self.app.volumeNode
        if volume is None:
            self.state.ds_error = "Open a volume first."
            return
        try:
            job = self.logic.createJob(self.settings(), volume, None, self.app.segmentationNode)
            job.progress.connect(self._onProgress)
            job.log.connect(self._onLog)
            job.start()
        except Exception as exc:  # bad settings or input: the message is for the user
            self.state.ds_error = str(exc)
            return
        self.job = job
        self.applyTime = self.lastProgressTime = time.monotonic()
        self.state.update({"ds_running": True, "ds_progress": 0, "ds_stage": "starting",
                           "ds_message": "", "ds_download_ready": False})
        create_task(self._poll(job))

    def cancel(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.state.ds_stage = "cancelling"
            self.job.cancel()

    async def _poll(self, job) -> None:
        try:
            while True:
                with self.state:
                    running = job.processEvents()
                if not running:
                    break
                await asyncio.sleep(POLL_S)
            with self.state:
                self._finished(job)
        except Exception as exc:  # the page must leave the running state whatever happened
            log.exception("DiffusionSeg job failed")
            with self.state:
                self.state.ds_error = str(exc) or type(exc).__name__
        finally:
            with self.state:
                self.state.ds_running = False

    def _onProgress(self, stage: str, done: int, total: int, elapsed: float) -> None:
        self.lastProgressTime = time.monotonic()
        self.state.ds_stage = f"{stage} {done}/{total}" if total else stage
        self.state.ds_progress = int(100 * done / total) if total else 0

    def _onLog(self, level: str, message: str) -> None:
        if level in ("info", "warning") and message:
            self.state.ds_message = message

    def _finished(self, job) -> None:
        seconds = time.monotonic() - self.applyTime
        if job.state == job.CANCELLED:
            self.state.ds_stage = "cancelled"
            self.state.ds_message = "Cancelled; the segmentation was not changed."
            return
        if job.state == job.FAILED:
            self.state.ds_stage = "failed"
            self.state.ds_error = str(job.error)
            return
        editor = self.app.segmentEditorLogic.segmentation_editor
        if job.segmentIds:
            editor.set_active_segment_id(job.segmentIds[0])
            editor.set_surface_representation_enabled(True)   # the result in 3D too, as in Slicer's "Show 3D"
            editor.trigger_all_signals()
            self.state.ds_message = f"{len(job.segmentIds)} segment(s) added in {seconds:.1f} s."
        else:
            self.state.ds_message = "The method found nothing here; no segment was added."
        self.app.selection.setResult(job)   # the evidence overlay and re-selection slider, if any
        self.state.ds_stage = "done"
        self.state.ds_progress = 100
        self.state.ds_last_seconds = round(seconds, 2)
        log.info("Apply to overlay: %.2f s (%.2f s after the service's last progress event: download, "
                 "import, 3D surface, display)", seconds, time.monotonic() - self.lastProgressTime)
        self.refreshSegments()

    def refreshSegments(self, *_args) -> None:
        """The segment table in the page (name, colour, voxel count), after any change."""
        self.state.ds_segments = segmentRows(self.app.segmentationNode)
