"""The panel's parameter node <-> JobSettings, and the method-parameter store, without Qt.

The parameter node (ParameterNode.py) needs Slicer's GUI; these functions only read and set its
attributes, so the tests run them on any object with the same fields. The ranges are the
wrapper's own (`WithinRange`), so a remembered value is clamped to what the node accepts.
"""

from __future__ import annotations

import json

from .JobSettings import SLICE_AXES, JobSettings

THREADS_RANGE = (0, 1024)
BATCH_SIZE_RANGE = (0, 256)
SEED_RANGE = (0, 2147483647)
SLICE_INDEX_RANGE = (0, 100000)


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], int(value)))


def settingsFromParameterNode(node, methodParams: dict) -> JobSettings:
    """What Apply runs: the node's fields and the current method's parameters. The worker
    Python is a per-user setting (WorkerSettings.py), never the scene's."""
    return JobSettings(
        method=node.method, prompt=node.prompt, model=node.model, device=node.device,
        dtype=node.dtype, threads=node.threads, params=dict(methodParams), axis=node.axis,
        intensity=node.intensity or "auto", skipEmptySlices=node.skipEmptySlices,
        fillHoles=node.fillHoles, largestComponent=node.largestComponent, batchSize=node.batchSize,
        sliceRange=[node.sliceFirst, node.sliceLast] if node.useSliceRange else None,
        seed=node.seed)


def applySettingsToParameterNode(settings: JobSettings, node) -> None:
    """Restore remembered choices (QSettings) into a fresh parameter node, clamped to its ranges."""
    node.method = settings.method
    node.prompt = settings.prompt
    node.model = settings.model
    node.device = settings.device
    node.dtype = settings.dtype
    node.threads = _clamp(settings.threads, THREADS_RANGE)
    node.axis = settings.axis if settings.axis in SLICE_AXES else "auto"
    node.intensity = settings.intensity
    node.skipEmptySlices = settings.skipEmptySlices
    node.fillHoles = settings.fillHoles
    node.largestComponent = settings.largestComponent
    node.batchSize = _clamp(settings.batchSize, BATCH_SIZE_RANGE)
    node.seed = _clamp(settings.seed, SEED_RANGE)
    if settings.method and settings.params:
        node.methodParamsJson = json.dumps({settings.method: settings.params})
    if settings.sliceRange:
        node.useSliceRange = True
        node.sliceFirst, node.sliceLast = (_clamp(v, SLICE_INDEX_RANGE) for v in settings.sliceRange)


def storedMethodParams(methodParamsJson: str) -> dict:
    """{method: {param: value}} from the node's JSON; a damaged value counts as nothing stored."""
    try:
        stored = json.loads(methodParamsJson or "{}")
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def withMethodParams(methodParamsJson: str, method: str, values: dict) -> str:
    """The node's JSON with `method`'s values replaced (other methods' values kept)."""
    stored = storedMethodParams(methodParamsJson)
    stored[method] = dict(values)
    return json.dumps(stored)
