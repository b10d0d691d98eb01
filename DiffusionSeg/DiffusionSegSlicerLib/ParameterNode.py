"""The panel state as a parameter node wrapper (needs Slicer's Qt: not imported by the headless
tests). Widgets with a `SlicerParameterName` property in the .ui are bound by `connectGui`;
method choice, method parameters and paths are bound by the panel code."""

import json
from typing import Annotated, Union

import slicer
from slicer.parameterNodeWrapper import (
    Choice,
    Default,
    WithinRange,
    parameterNodeWrapper,
)

from .JobSettings import DEVICES, DTYPES, SLICE_AXES, JobSettings


@parameterNodeWrapper
class DiffusionSegParameterNode:
    # Both classes listed: RGB (vector) volumes are valid inputs, labelmaps are not.
    inputVolume: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLVectorVolumeNode]
    roi: slicer.vtkMRMLMarkupsROINode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    method: str
    prompt: str
    model: str
    device: Annotated[str, Choice(list(DEVICES)), Default("auto")]
    dtype: Annotated[str, Choice(list(DTYPES)), Default("auto")]
    threads: Annotated[int, WithinRange(0, 1024)]
    useSliceRange: bool
    sliceFirst: Annotated[int, WithinRange(0, 100000)]
    sliceLast: Annotated[int, WithinRange(0, 100000)]
    axis: Annotated[str, Choice(list(SLICE_AXES)), Default("auto")]
    intensity: Annotated[str, Default("auto")]   # preset name; combo bound by the panel (label != name)
    skipEmptySlices: Annotated[bool, Default(True)]
    fillHoles: Annotated[bool, Default(True)]
    largestComponent: bool
    batchSize: Annotated[int, WithinRange(0, 256)]
    seed: Annotated[int, WithinRange(0, 2147483647)]
    methodParamsJson: Annotated[str, Default("{}")]   # {method: {param: value}}


def settingsFromParameterNode(node: DiffusionSegParameterNode, methodParams: dict) -> JobSettings:
    return JobSettings(
        method=node.method, prompt=node.prompt, model=node.model, device=node.device,
        dtype=node.dtype, threads=node.threads, params=dict(methodParams), axis=node.axis, intensity=node.intensity or "auto",
        skipEmptySlices=node.skipEmptySlices,
        fillHoles=node.fillHoles, largestComponent=node.largestComponent, batchSize=node.batchSize,
        sliceRange=[node.sliceFirst, node.sliceLast] if node.useSliceRange else None,
        seed=node.seed)   # the worker Python is a per-user setting (WorkerSettings.py), never the scene's


def applySettingsToParameterNode(settings: JobSettings, node: DiffusionSegParameterNode) -> None:
    """Restore remembered choices (QSettings) into a fresh parameter node."""
    node.method = settings.method
    node.prompt = settings.prompt
    node.model = settings.model
    node.device = settings.device
    node.dtype = settings.dtype
    node.threads = max(0, min(1024, settings.threads))
    node.axis = settings.axis if settings.axis in SLICE_AXES else "auto"
    node.intensity = settings.intensity
    node.skipEmptySlices = settings.skipEmptySlices
    node.fillHoles = settings.fillHoles
    node.largestComponent = settings.largestComponent
    node.batchSize = max(0, min(256, settings.batchSize))
    node.seed = max(0, settings.seed)
    if settings.method and settings.params:
        node.methodParamsJson = json.dumps({settings.method: settings.params})
    if settings.sliceRange:
        node.useSliceRange = True
        node.sliceFirst, node.sliceLast = settings.sliceRange
