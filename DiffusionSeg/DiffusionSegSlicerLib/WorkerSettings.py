"""Which Python runs the worker: a per-user application setting, never part of a scene.

A scene (or a parameter node in it) is data that people exchange; if it could name the worker
executable, opening someone's scene and pressing Apply would run their program. So the path
lives in the user's application settings (QSettings in Slicer; any object with
`value(key, default)` / `setValue(key, value)`, e.g. `DictSettings` in tests and scripts). A
path that arrives any other way (a script's JobSettings, old saved settings) is shown to the
user and confirmed before its first run; confirmed paths are remembered.

Headless (no Qt here): Slicer's module shell (DiffusionSeg.py) passes qt.QSettings() and a
confirmation dialog; without them, settings last as long as the process and an unconfirmed path
is never run.
"""

from __future__ import annotations

import json
import os

PYTHON_KEY = "DiffusionSeg/WorkerPython"
APPROVED_KEY = "DiffusionSeg/ApprovedWorkerPythons"


class DictSettings:
    """QSettings' two methods over a dict."""

    def __init__(self, values: dict | None = None):
        self.values = dict(values or {})

    def value(self, key, default=None):
        return self.values.get(key, default)

    def setValue(self, key, value) -> None:
        self.values[key] = value


class WorkerPythonNotApproved(PermissionError):
    pass


class WorkerPythonSettings:
    def __init__(self, store=None, confirm=None):
        self.store = store if store is not None else DictSettings()
        self.confirm = confirm or (lambda path: False)   # no way to ask: never run it

    def chosenPython(self) -> str:
        """The path the user chose in the DiffusionSeg settings ('' = Slicer's own Python)."""
        value = self.store.value(PYTHON_KEY, "")
        return value.strip() if isinstance(value, str) else ""

    def choosePython(self, path: str) -> None:
        """The user picked `path` in the panel's settings: it is theirs, no confirmation needed."""
        path = (path or "").strip()
        self.store.setValue(PYTHON_KEY, path)
        if path:
            self._approve(path)

    def approvedPythons(self) -> list[str]:
        try:
            values = json.loads(self.store.value(APPROVED_KEY, "[]") or "[]")
        except (TypeError, ValueError):
            return []
        return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []

    def _approve(self, path: str) -> None:
        approved = self.approvedPythons()
        if _key(path) not in {_key(p) for p in approved}:
            self.store.setValue(APPROVED_KEY, json.dumps(approved + [path]))

    def resolve(self, requested: str | None = None) -> str:
        """The interpreter to run for a job asking for `requested` ('' = the chosen one). Any
        other path is confirmed by the user before its first run; refused → WorkerPythonNotApproved."""
        requested = (requested or "").strip()
        chosen = self.chosenPython()
        if not requested or _key(requested) == _key(chosen):
            return chosen
        if _key(requested) in {_key(p) for p in self.approvedPythons()}:
            return requested
        if not self.confirm(requested):
            raise WorkerPythonNotApproved(
                f"The worker Python {requested} was not confirmed, so it was not run. Choose it under "
                "Advanced > Worker Python if you want DiffusionSeg to use it.")
        self._approve(requested)
        return requested


def _key(path: str) -> str:
    return os.path.normcase(os.path.abspath(os.path.expanduser(path))) if path else ""
