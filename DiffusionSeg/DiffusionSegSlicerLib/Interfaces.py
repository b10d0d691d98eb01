"""What the panel needs from the world around it, as typing.Protocol classes (SlicerNNUnet's
style): the widgets are given these, so the tests give them stand-ins and check what the panel
asked for. The Slicer implementations are in SlicerDisplay.py; the logic is Logic.py's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from collections.abc import Callable
from typing import Protocol


class UserMessages(Protocol):
    """Message boxes and the busy cursor."""

    def showError(self, message: str, details: str = "") -> None: ...

    def showInfo(self, message: str, title: str = "") -> None: ...

    def askYesNo(self, message: str, title: str = "") -> bool: ...

    def askOkCancel(self, message: str, title: str = "", details: str = "") -> bool: ...

    def errorsShown(self, message: str, busy: bool = False) -> AbstractContextManager:
        """A block whose exception is shown (message, then the error; the traceback as details)
        and raised again; `busy` shows the wait cursor meanwhile."""
        ...

    def restartApplication(self) -> None: ...

    def busy(self, message: str = "") -> AbstractContextManager:
        """The wait cursor (and `message` painted first) for an action that blocks the GUI."""
        ...


class SliceViewer(Protocol):
    """The slice views (which volumes they show, their left clicks) and the Segment Editor."""

    def showBackground(self, volumeNode) -> None: ...

    def showForeground(self, volumeNode, opacity: float = 0.5) -> None:
        """`volumeNode` None: no foreground."""
        ...

    def showLabel(self, labelmapNode, backgroundNode=None) -> None:
        """A labelmap as the label layer over `backgroundNode` (a running job's preview)."""
        ...

    def editSegments(self, segmentationNode, volumeNode, segmentId: str) -> None:
        """Open the Segment Editor on this segmentation, volume and segment."""
        ...

    def observeLeftClicks(self, onClick: Callable[[tuple], None]) -> list[Callable[[], None]]:
        """Call `onClick(ras)` for each left click in any slice view; returns one remover per view."""
        ...


class PanelLogic(Protocol):
    """What the panel uses of Logic.DiffusionSegLogic."""

    methods: dict
    importer: object
    workerSettings: object
    serviceSettings: object
    serviceManager: object

    def intensityPresets(self) -> dict: ...

    def createJob(self, settings, inputVolumeNode, roiNode=None, targetSegmentationNode=None): ...

    def createFineTuneJob(self, settings, volumeNode, segmentationNode, segmentIds=None): ...

    def launcher(self, settings): ...

    def stopService(self) -> None: ...
