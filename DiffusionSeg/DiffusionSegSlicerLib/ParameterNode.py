"""The panel state as a parameter node wrapper (needs Slicer's Qt: not imported by the headless
tests). Widgets with a `SlicerParameterName` property in the .ui are bound by `connectGui`;
method choice, method parameters and paths are bound by the panel code. The mapping to and from
JobSettings is SettingsMapping.py (Qt-free, tested)."""

from typing import Annotated, Union

import slicer
from slicer.parameterNodeWrapper import (
    Choice,
    Default,
    WithinRange,
    parameterNodeWrapper,
)

from .JobSettings import DEVICES, DTYPES, SLICE_AXES
from .SettingsMapping import BATCH_SIZE_RANGE, SEED_RANGE, SLICE_INDEX_RANGE, THREADS_RANGE


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
    threads: Annotated[int, WithinRange(*THREADS_RANGE)]
    useSliceRange: bool
    sliceFirst: Annotated[int, WithinRange(*SLICE_INDEX_RANGE)]
    sliceLast: Annotated[int, WithinRange(*SLICE_INDEX_RANGE)]
    axis: Annotated[str, Choice(list(SLICE_AXES)), Default("auto")]
    intensity: Annotated[str, Default("auto")]   # preset name; combo bound by the panel (label != name)
    skipEmptySlices: Annotated[bool, Default(True)]
    fillHoles: Annotated[bool, Default(True)]
    largestComponent: bool
    batchSize: Annotated[int, WithinRange(*BATCH_SIZE_RANGE)]
    seed: Annotated[int, WithinRange(*SEED_RANGE)]
    methodParamsJson: Annotated[str, Default("{}")]   # {method: {param: value}}
