"""One Apply: volume node -> service job -> progress in the page -> segments in the scene.

The request is built by the Slicer module's own `buildJobRequest` (same validation, same prompt
rule), the input is written by its `exportVolume` (Slicer's storage node, so the result comes back
on exactly the node's grid), and the result is imported by its `SegmentationImporter` (names,
colours and standard terminology as in Slicer). The service does the work; this process only
waits on its event stream in a worker thread and copies events into the page state on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

from trame_server.utils.asynchronous import create_task

from .panel import paramKey
from .segments import segmentRows

log = logging.getLogger(__name__)


def promptLines(text: str) -> list[str]:
    """Several prompts, one per line (blank lines and surrounding spaces ignored, order kept)."""
    seen, prompts = set(), []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and line.lower() not in seen:
            seen.add(line.lower())
            prompts.append(line)
    return prompts


class JobController:
    def __init__(self, app, client):
        self.app = app
        self.client = client
        self.jobId: str | None = None
        self.applyTime = 0.0
        app.segmentEditorLogic.segmentation_editor.segmentation_modified.connect(self.refreshSegments)

    @property
    def state(self):
        return self.app.state

    def settings(self):
        from DiffusionSegSlicerLib.JobSettings import JobSettings

        state, method = self.state, self.state.ds_method
        info = self.app.methods[method]
        prompts = promptLines(state.ds_prompts)
        params = {p.name: state[paramKey(method, p.name)] for p in info.params}
        settings = JobSettings(method=method, prompt=prompts[0] if prompts else "", model=state.ds_model or "",
                               device=state.ds_device, params=params, axis=state.ds_axis,
                               intensity=state.ds_intensity)
        return settings, prompts, info

    def buildRequest(self, inputPath: str, outputPath: str) -> dict:
        """The job request, checked before anything is sent (a bad value is reported at once)."""
        from DiffusionSegSlicerLib.JobSettings import buildJobRequest

        settings, prompts, info = self.settings()
        request = buildJobRequest(settings, inputPath, outputPath, None, info).to_dict()
        if len(prompts) > 1 and info.prompt != "none":
            request["prompts"] = prompts
            request["prompt"] = None
        return request

    # -- Apply / Cancel --------------------------------------------------------------------------

    def start(self) -> None:
        log.warning("DEBUG start %s", self.state.ds_running)
        if self.state.ds_running:
            return
        volume = self.app.volumeNode
        self.state.ds_error = ""
        if volume is None:
            self.state.ds_error = "Open a volume first."
            return
        folder = self.app.workspace.newFolder("job")
        try:
            from DiffusionSegSlicerLib.VolumeIO import exportVolume

            request = self.buildRequest(str(folder / "input.nrrd"), str(folder / "output.nrrd"))
            exportVolume(volume, str(folder / "input.nrrd"))
        except (ValueError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            self.state.ds_error = str(exc)
            return
        self.applyTime = time.monotonic()
        self.state.update({"ds_running": True, "ds_progress": 0, "ds_stage": "submitting",
                           "ds_message": "", "ds_download_ready": False})
        create_task(self._run(request, folder, volume))

    def cancel(self) -> None:
        if self.jobId is not None:
            jobId = self.jobId
            self.state.ds_stage = "cancelling"
            create_task(asyncio.to_thread(self.client.cancel, jobId))

    async def _run(self, request: dict, folder, volume) -> None:
        try:
            self.jobId = await asyncio.to_thread(self.client.submit, request, folder / "input.nrrd")
            result = await self._follow(self.jobId)
            if result is not None:
                output = folder / "result.nrrd"
                await asyncio.to_thread(self.client.download, self.jobId, result, output)
                with self.state:
                    self._import(str(output), result, volume)
        except Exception as exc:  # every failure ends up in the page, the scene unchanged
            log.exception("DiffusionSeg job failed")
            with self.state:
                self.state.ds_error = str(exc) or type(exc).__name__
        finally:
            self.jobId = None
            shutil.rmtree(folder, ignore_errors=True)
            with self.state:
                self.state.ds_running = False

    async def _follow(self, jobId: str):
        """Copy the job's events into the page; the `result` event, or None when it failed."""
        events = await asyncio.to_thread(lambda: iter(self.client.events(jobId)))
        while True:
            event = await asyncio.to_thread(next, events, None)
            if event is None:
                raise RuntimeError("The service closed the job's event stream without a result.")
            kind = event.get("event")
            with self.state:
                if kind == "queued":
                    self.state.ds_stage = f"queued (position {event.get('position', '?')})"
                elif kind == "progress":
                    done, total = event.get("done", 0), event.get("total") or 0
                    self.state.ds_stage = f"{event.get('stage', '')} {done}/{total}" if total else event.get("stage", "")
                    self.state.ds_progress = int(100 * done / total) if total else 0
                elif kind in ("log", "warning"):
                    self.state.ds_message = event.get("message", "")
                elif kind == "error":
                    self.state.ds_error = event.get("message", "The job failed.")
                    self.state.ds_stage = "cancelled" if event.get("code") == "cancelled" else "failed"
                    return None
                elif kind == "result":
                    self.state.ds_stage = "importing the result"
                    return event

    def _import(self, path: str, result: dict, volume) -> None:
        editor = self.app.segmentEditorLogic.segmentation_editor
        names = {int(s["label"]): s["name"] for s in result.get("segments", []) if "label" in s}
        node, newIds = self.app.importer.importLabelmap(self.app.slicerApp.scene, path, volume, names,
                                                        targetSegmentationNode=self.app.segmentationNode)
        seconds = time.monotonic() - self.applyTime
        if not newIds:
            self.state.ds_message = "The method found nothing for this prompt; no segment was added."
        else:
            editor.set_active_segment_id(newIds[0])
            editor.trigger_all_signals()
            self.state.ds_message = f"{len(newIds)} segment(s) added in {seconds:.1f} s."
        self.state.ds_stage = "done"
        self.state.ds_progress = 100
        self.state.ds_last_seconds = round(seconds, 2)
        log.info("Apply to overlay: %.2f s", seconds)
        self.refreshSegments()

    def refreshSegments(self, *_args) -> None:
        """The segment table in the page (name, colour, voxel count), after any change."""
        self.state.ds_segments = segmentRows(self.app.segmentationNode)
