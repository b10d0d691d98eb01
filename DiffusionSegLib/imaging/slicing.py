"""Which 2D slices of a volume the model sees, cropped and oriented how.

Slices are taken along a patient-oriented axis (axial by default), limited to a slice range and
an ROI box, and flipped so that every slice is shown the way a reader expects (anterior or
superior up, patient right on the left): the diffusion models were trained on upright images.
Arrays use SimpleITK's numpy order (K, J, I); ROI boxes use ITK index order (I, J, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contract.errors import InvalidImage, InvalidRequest
from ..io.images import MIN_SLICE_SIDE, Volume

# Patient axes in LPS: 0 = L(x), 1 = P(y), 2 = S(z). For each view: the patient axis normal to the
# slice, then the patient axes of the slice's rows and columns with their display direction
# (+1: index should increase towards +LPS when going down/right).
_VIEWS = {
    "axial": (2, ((1, +1), (0, +1))),      # rows anterior→posterior, columns right→left
    "coronal": (1, ((2, -1), (0, +1))),    # rows superior→inferior, columns right→left
    "sagittal": (0, ((2, -1), (1, +1))),   # rows superior→inferior, columns anterior→posterior
}
_IJK_TO_NUMPY = {"i": 2, "j": 1, "k": 0}


@dataclass(frozen=True)
class SlicePlan:
    axis: int                                  # numpy axis slices are taken along
    indices: tuple[int, ...]                   # slice indices along `axis` to segment
    box: tuple[slice, slice, slice]            # ROI crop in numpy order
    flips: tuple[bool, bool]                   # flip rows / columns of the 2D slice for display
    view: str
    transpose: bool = False                    # stored rows are the display columns (non-axial acquisitions)

    @property
    def in_plane_axes(self) -> tuple[int, int]:
        return tuple(a for a in range(3) if a != self.axis)  # type: ignore[return-value]

    def slice_shape(self) -> tuple[int, int]:
        """(height, width) of the slice as displayed (after any transpose)."""
        rows, cols = self.in_plane_axes
        extent = [b.stop - b.start for b in self.box]
        return (extent[cols], extent[rows]) if self.transpose else (extent[rows], extent[cols])

    def pixel_spacing(self, spacing: tuple[float, float, float]) -> tuple[float, float]:
        """(row, column) pixel spacing of the displayed slice, from the volume's (x, y, z) spacing:
        what the letterbox needs to give the model square physical pixels."""
        rows, cols = self.in_plane_axes
        along = {axis: float(spacing[2 - axis]) for axis in (rows, cols)}  # numpy axis a ↔ spacing[2 − a]
        return (along[cols], along[rows]) if self.transpose else (along[rows], along[cols])

    def extract(self, array: np.ndarray, index: int) -> np.ndarray:
        """The oriented 2D slice (H, W[, 3]) at `index`, cropped to the ROI."""
        cropped = array[self.box]
        local = index - self.box[self.axis].start
        plane = np.take(cropped, local, axis=self.axis)
        return self._orient(plane)

    def place(self, target: np.ndarray, index: int, plane: np.ndarray) -> None:
        """Write a 2D result back at `index` (inverse of `extract`)."""
        plane = self._unorient(plane)
        view = target[self.box]
        local = index - self.box[self.axis].start
        selector = [slice(None)] * 3
        selector[self.axis] = local
        view[tuple(selector)] = plane

    def _orient(self, plane: np.ndarray) -> np.ndarray:
        """Stored order → display order: transpose, then flips."""
        if self.transpose:
            plane = plane.swapaxes(0, 1)
        if self.flips[0]:
            plane = plane[::-1]
        if self.flips[1]:
            plane = plane[:, ::-1]
        return plane

    def _unorient(self, plane: np.ndarray) -> np.ndarray:
        """Display order → stored order (the inverse of `_orient`)."""
        if self.flips[1]:
            plane = plane[:, ::-1]
        if self.flips[0]:
            plane = plane[::-1]
        if self.transpose:
            plane = plane.swapaxes(0, 1)
        return plane


def choose_axis(volume: Volume, axis: str) -> tuple[int, str]:
    """Numpy axis to slice along, and the view name it corresponds to."""
    shape = volume.shape
    if shape[0] == 1:
        return 0, "2d"
    if axis in _IJK_TO_NUMPY:
        numpy_axis = _IJK_TO_NUMPY[axis]
        return numpy_axis, _view_of(volume, numpy_axis)
    view = "axial" if axis == "auto" else axis
    normal = _VIEWS[view][0]
    # IJK column of the direction matrix most aligned with the view's normal; numpy axis = 2 - ijk.
    ijk = int(np.argmax(np.abs(volume.direction[normal, :])))
    return 2 - ijk, view


def _view_of(volume: Volume, numpy_axis: int) -> str:
    patient = int(np.argmax(np.abs(volume.direction[:, 2 - numpy_axis])))
    return {2: "axial", 1: "coronal", 0: "sagittal"}[patient]


def _display_orientation(volume: Volume, axis: int, view: str) -> tuple[bool, tuple[bool, bool]]:
    """(transpose, (flip rows, flip columns)) that show a slice the reader's way.

    The stored in-plane axes are assigned to the view's display rows and columns by their
    dominant patient axis (a sagittally acquired scan stores its axial rows as columns), then
    each is flipped if it runs against the display direction."""
    if view == "2d":
        return False, (False, False)  # photographs and X-rays are stored the way they are shown
    rows, cols = (a for a in range(3) if a != axis)
    (row_patient, _), _ = _VIEWS[view][1]
    transpose = int(np.argmax(np.abs(volume.direction[:, 2 - cols]))) == row_patient
    if transpose:
        rows, cols = cols, rows
    flips = []
    for numpy_axis, (patient_axis, wanted) in zip((rows, cols), _VIEWS[view][1]):
        component = volume.direction[patient_axis, 2 - numpy_axis]
        flips.append(bool(component * wanted < 0))
    return transpose, (flips[0], flips[1])


def plan_slices(volume: Volume, axis: str = "auto", roi: dict | None = None,
                slice_range: list[int] | None = None) -> SlicePlan:
    shape = volume.shape
    numpy_axis, view = choose_axis(volume, axis)
    box = [slice(0, n) for n in shape]
    if roi is not None:
        lo = [roi["ijk_min"][2 - a] for a in range(3)]
        hi = [roi["ijk_max"][2 - a] for a in range(3)]
        for a in range(3):
            start, stop = max(0, lo[a]), min(shape[a], hi[a] + 1)
            if start >= stop:
                raise InvalidRequest(
                    f"The ROI box (IJK {roi['ijk_min']}–{roi['ijk_max']}) lies outside the image "
                    f"(size {shape[2]}×{shape[1]}×{shape[0]}).", hint="Move the ROI over the image.")
            box[a] = slice(start, stop)
    if slice_range is not None:
        first, last = slice_range
        count = shape[numpy_axis]
        if first >= count:
            raise InvalidRequest(f"Slice range starts at {first} but the image has {count} slices on that axis.")
        current = box[numpy_axis]
        start, stop = max(current.start, first), min(current.stop, last + 1)
        if start >= stop:
            raise InvalidRequest("The slice range and the ROI do not overlap.")
        box[numpy_axis] = slice(start, stop)
    transpose, flips = _display_orientation(volume, numpy_axis, view)
    plan = SlicePlan(axis=numpy_axis, indices=tuple(range(box[numpy_axis].start, box[numpy_axis].stop)),
                     box=tuple(box), flips=flips, view=view, transpose=transpose)  # type: ignore[arg-type]
    height, width = plan.slice_shape()
    if min(height, width) < MIN_SLICE_SIDE:
        raise InvalidImage(
            f"The slices to segment are {height}×{width} pixels; at least {MIN_SLICE_SIDE}×{MIN_SLICE_SIDE} are needed.",
            hint="Enlarge the ROI or choose another slice axis.")
    return plan
