"""A tiny signal/slot class (custom Qt signals defined from Python are fragile under PythonQt;
SlicerNNUnet uses the same idea). Used by the logic so it never needs Qt."""

from __future__ import annotations

import logging
from typing import Callable


class Signal:
    def __init__(self, *argumentNames: str):
        self.argumentNames = argumentNames
        self._slots: list[Callable] = []

    def connect(self, slot: Callable) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Callable) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args) -> None:
        """Call every slot; a slot that raises is logged and does not stop the others or the
        emitter (as with Qt signals), so a display error cannot break a running job."""
        for slot in list(self._slots):
            try:
                slot(*args)
            except Exception:
                logging.exception(f"DiffusionSeg: error in a slot of {self.argumentNames}")
