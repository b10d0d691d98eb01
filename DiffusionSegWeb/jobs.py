"""One Apply: the Slicer module's own service-backed job, polled from the page's event loop.

Nothing of the job is re-implemented here. `DiffusionSegLogic.createJob` (DiffusionSegSlicerLib)
gives a `ServiceSegmentationJob`: it checks the settings against the method metadata, exports the
volume through Slicer's storage node (so the result comes back on exactly the node's grid), sends
it to the service (by path to the local one, uploaded to a remote one), forwards its events,
draws the finished slices into a preview labelmap while it runs, downloads the labelmap (and the
evidence bundle) and imports it with names, colours and standard terminology, removing its
temporary folder and preview in every outcome. What it means to a person is the module's own
`JobStatus` with the browser's hints (status.py copies it into the page). The Slicer panel drives
the job from a QTimer; the page drives it from an asyncio task.
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
    def __init__(self, app, logic, status, pythonInterpreter: str = ""):
        self.app = app
        self.logic = logic
        self.status = status               # status.StatusBridge: JobStatus("browser") -> page state
        self.pythonInterpreter = pythonInterpreter
        self.job = None
        self.lastResult = None             # the last job that added segments (Remove result)
        self.madeWith: dict | None = None  # method, model, prompt of the last job that added segments
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
        from DiffusionSegSlicerLib.JobSettings import splitPrompts

        if self.job is not None and self.job.isRunning():
            return
        volume = self.app.volumeNode
        if volume is None:
            self.status.model.startFailed("Open a volume first.")
            return
        self.app.clearResult()              # the last job's messages, overlays and selection go
        try:
            settings = self.settings()
            job = self.logic.createJob(settings, volume, None, self.app.segmentationNode)
            self.status.model.start(job, len(splitPrompts(settings.prompt)) or 1)
            job.progress.connect(self._onProgress)
            job.partial.connect(self._onPartial)
            job.start()
        except Exception as exc:  # bad settings or input: the message is for the user
            self.status.model.startFailed(str(exc))
            return
        self.job = job
        self.applyTime = self.lastProgressTime = time.monotonic()
        self.state.update({"ds_running": True, "ds_download_ready": False, "ds_dicom_ready": False,
                           "ds_preview_slices": 0})
        create_task(self._poll(job))

    def cancel(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.status.model.cancelling()
            self.job.cancel()

    async def _poll(self, job) -> None:
        try:
            while True:
                with self.state:   # the job's end and its result reach the page in one update
                    running = job.processEvents()
                    self.status.refresh()      # the clock and the estimate run between events
                    if not running:
                        self._finished(job)
                        self.state.ds_running = False
                if not running:
                    break
                await asyncio.sleep(POLL_S)
        except Exception as exc:  # the page must leave the running state whatever happened
            log.exception("DiffusionSeg job failed")
            with self.state:
                job.cancel()
                self.status.model.fail(f"The segmentation failed: {exc or type(exc).__name__}")
        finally:
            with self.state:
                self.state.ds_running = False

    def _onProgress(self, stage: str, done: int, total: int, elapsed: float) -> None:
        self.lastProgressTime = time.monotonic()

    def _onPartial(self, previewNode, slicesDone: int) -> None:
        """The finished slices, as every slice view's label layer over the input."""
        if previewNode is None:
            return
        self.state.ds_preview_slices = int(slicesDone)
        composites = self.app.slicerApp.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for index in range(composites.GetNumberOfItems()):
            composite = composites.GetItemAsObject(index)
            if composite.GetLabelVolumeID() != previewNode.GetID():
                composite.SetLabelVolumeID(previewNode.GetID())
                composite.SetLabelOpacity(0.6)

    def _finished(self, job) -> None:
        seconds = time.monotonic() - self.applyTime
        if job.state != job.SUCCEEDED:
            return                              # cancelled or failed: the status says so, nothing changed
        editor = self.app.segmentEditorLogic.segmentation_editor
        if job.segmentIds:
            self.lastResult = job
            settings = job.settings
            self.madeWith = {"method": settings.method, "model": settings.model, "prompt": settings.prompt}
            editor.set_active_segment_id(job.segmentIds[0])
            editor.set_surface_representation_enabled(True)   # the result in 3D too, as in Slicer's "Show 3D"
            editor.trigger_all_signals()
        self.app.selection.setResult(job)   # the evidence (overlay off) and the re-selection slider, if any
        self.state.ds_last_seconds = round(seconds, 2)
        log.info("Apply to overlay: %.2f s (%.2f s after the service's last progress event: download, "
                 "import, 3D surface, display)", seconds, time.monotonic() - self.lastProgressTime)
        self.refreshSegments()

    def removeResult(self) -> None:
        """Undo the last job: its segments and evidence volumes (other segments are untouched)."""
        job = self.lastResult
        if job is None or not job.hasResult() or self.state.ds_running:
            return
        self.app.selection.clear()
        removed = job.removeResult()
        self.lastResult = None
        self.status.model.note(f"Removed the last result ({removed} segment(s) and its evidence).")
        self.app.segmentEditorLogic.segmentation_editor.trigger_all_signals()
        self.refreshSegments()

    def refreshSegments(self, *_args) -> None:
        """The segment table in the page (name, colour, voxel count), after any change."""
        rows = segmentRows(self.app.segmentationNode)
        self.state.ds_segments = rows
        self.state.ds_can_remove = bool(self.lastResult is not None and self.lastResult.hasResult())
