"""A tiny signal/slot class (custom Qt signals defined from Python are fragile under PythonQt;
SlicerNNUnet uses the same idea). Used by the logic so it never needs Qt."""

from __future__ import annotations

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
        for slot in list(self._slots):
            slot(*args)
