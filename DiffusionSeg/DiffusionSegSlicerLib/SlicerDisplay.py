"""The Slicer application's side of Interfaces.py: message boxes through slicer.util, the slice
views through the layout manager. Needs Slicer's GUI (the tests use stand-ins instead)."""

from __future__ import annotations

from contextlib import contextmanager

import qt
import slicer
import vtk


class SlicerMessages:
    """UserMessages with Slicer's dialogs (and their "don't show again" conventions)."""

    def showError(self, message: str, details: str = "") -> None:
        slicer.util.errorDisplay(message, detailedText=details or None)

    def showInfo(self, message: str, title: str = "") -> None:
        slicer.util.infoDisplay(message, windowTitle=title or None)

    def askYesNo(self, message: str, title: str = "") -> bool:
        return bool(slicer.util.confirmYesNoDisplay(message, windowTitle=title or None))

    def askOkCancel(self, message: str, title: str = "", details: str = "") -> bool:
        return bool(slicer.util.confirmOkCancelDisplay(message, windowTitle=title or None,
                                                       detailedText=details or None))

    def errorsShown(self, message: str, busy: bool = False):
        return slicer.util.tryWithErrorDisplay(message, waitCursor=busy)

    def restartApplication(self) -> None:
        slicer.util.restart()

    @contextmanager
    def busy(self, message: str = ""):
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            slicer.app.processEvents()   # the message set before this shows before the work starts
            yield
        finally:
            slicer.app.restoreOverrideCursor()


class SlicerSliceViewer:
    """SliceViewer on the application's layout: every slice view of the current layout."""

    def showBackground(self, volumeNode) -> None:
        slicer.util.setSliceViewerLayers(background=volumeNode, fit=False)

    def showForeground(self, volumeNode, opacity: float = 0.5) -> None:
        if volumeNode is None:
            slicer.util.setSliceViewerLayers(foreground=None, fit=False)
        else:
            slicer.util.setSliceViewerLayers(foreground=volumeNode, foregroundOpacity=opacity, fit=False)

    def showLabel(self, labelmapNode, backgroundNode=None) -> None:
        if backgroundNode is not None:
            slicer.util.setSliceViewerLayers(background=backgroundNode, label=labelmapNode, fit=False)
        else:
            slicer.util.setSliceViewerLayers(label=labelmapNode, fit=False)

    def editSegments(self, segmentationNode, volumeNode, segmentId: str) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        editor.setSourceVolumeNode(volumeNode)
        editor.setCurrentSegmentID(segmentId)

    def observeLeftClicks(self, onClick):
        layoutManager = slicer.app.layoutManager()
        removers = []
        for name in layoutManager.sliceViewNames():
            view = layoutManager.sliceWidget(name).sliceView()
            interactor = view.interactorStyle().GetInteractor()

            def clicked(caller, event, view=view, interactor=interactor):
                xy = interactor.GetEventPosition()
                onClick(view.convertXYZToRAS(view.convertDeviceToXYZ(xy)))

            tag = interactor.AddObserver(vtk.vtkCommand.LeftButtonPressEvent, clicked, 1.0)
            removers.append(lambda interactor=interactor, tag=tag: interactor.RemoveObserver(tag))
        return removers
