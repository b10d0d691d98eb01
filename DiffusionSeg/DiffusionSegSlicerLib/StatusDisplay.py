"""The panel's status area: copies a JobStatus view (JobStatus.py) into its widgets.

One line for people (statusLabel), the slices done with the elapsed time and an estimate (the
progress bar and that line), the stage as a sub-line, the warnings in their own amber box (each
once, never dropped), and the log — the request, the worker's lines, an error's details — in the
collapsed "Details (log)" section, never in the status line.
"""

from slicer.i18n import tr as _

from .JobStatus import FAILED


class StatusDisplay:
    def __init__(self, ui):
        self.ui = ui
        self._logShown = 0
        ui.progressBar.hide()
        ui.stageLabel.hide()
        ui.warningLabel.hide()

    def show(self, view, logLines) -> None:
        ui = self.ui
        parts = [view.message]
        if view.active:
            parts.append(view.progressLine())
        elif view.state == FAILED:
            parts.append(view.error)
        ui.statusLabel.text = "\n".join(part for part in parts if part)
        sub = view.stage if view.active else (view.hint if view.state == FAILED else "")
        ui.stageLabel.text = sub
        ui.stageLabel.visible = bool(sub)
        if view.active:
            if view.fraction is None:
                ui.progressBar.setRange(0, 0)        # busy: nothing to count yet
            else:
                ui.progressBar.setRange(0, view.slicesTotal)
                ui.progressBar.setValue(view.slicesDone)
                ui.progressBar.setFormat(_("%v of %m slices"))
            ui.progressBar.show()
        else:
            ui.progressBar.hide()
        ui.warningLabel.text = "\n".join(_("Warning: {message}").format(message=w) for w in view.warnings)
        ui.warningLabel.visible = bool(view.warnings)
        self.showLog(logLines)

    def showLog(self, logLines) -> None:
        if len(logLines) < self._logShown:
            self.ui.logTextEdit.clear()
            self._logShown = 0
        for line in logLines[self._logShown:]:
            self.ui.logTextEdit.appendPlainText(line)
        self._logShown = len(logLines)
