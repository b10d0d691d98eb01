"""The page's status line and busy state.

`StatusBridge` copies the module's status model (DiffusionSegSlicerLib/JobStatus.py, with the
browser's error hints: no shell advice, no server paths) into the page state: `ds_status` (state,
one line for people, slices done out of the total with elapsed time and an estimate, the stage,
warnings, error and hint) and `ds_log` (the request, the service's messages, an error's details),
which the page shows only in its log dialog.

`Busy` runs an action that blocks the server for a while (re-selection, a click, saving, opening
a volume) after the page has been told: `ds_busy` names it, the page shows it and disables what
would start another, and it is cleared whatever the action did.
"""

from __future__ import annotations

import asyncio
import logging

from trame_server.utils.asynchronous import create_task

log = logging.getLogger(__name__)
BUSY_DELAY_S = 0.05   # long enough for the busy message to leave before the work blocks the loop


def viewDict(view) -> dict:
    fraction = view.fraction
    return {"state": view.state, "active": view.active, "message": view.message, "stage": view.stage,
            "line": view.progressLine() if view.active else "",
            "percent": None if fraction is None else round(100 * fraction, 1),
            "warnings": list(view.warnings), "error": view.error, "hint": view.hint}


class StatusBridge:
    def __init__(self, state):
        from DiffusionSegSlicerLib.JobStatus import JobStatus

        self.state = state
        self.model = JobStatus("browser")
        state.setdefault("ds_status", viewDict(self.model.view()))
        state.setdefault("ds_log", [])
        state.setdefault("ds_log_open", False)
        self.model.changed.connect(lambda _status: self.refresh())

    def refresh(self) -> None:
        value = viewDict(self.model.view())
        if self.state.ds_status != value:
            self.state.ds_status = value
        if list(self.state.ds_log or []) != self.model.logLines:
            self.state.ds_log = list(self.model.logLines)


class Busy:
    def __init__(self, state):
        self.state = state
        state.setdefault("ds_busy", "")

    def run(self, message: str, work) -> None:
        """Show `message` now; run `work()` once the page has it; clear the message after. Without
        a running event loop (a script, a test) the work runs at once."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            work()
            return
        with self.state:
            self.state.ds_busy = message

        async def later():
            await asyncio.sleep(BUSY_DELAY_S)
            try:
                with self.state:
                    work()
            except Exception:  # the action reports its own errors; never leave the page busy
                log.exception("%s failed", message)
            finally:
                with self.state:
                    self.state.ds_busy = ""

        create_task(later())
