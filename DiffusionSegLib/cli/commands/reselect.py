"""`reselect`: choose a result's foreground proposals again, without the model.

Reads a labelmap written with `segment --evidence` (its bundle beside it: `<stem>.proposals.nrrd`,
`<stem>.scores.json`), applies new thresholds and include/exclude overrides, and writes a new
labelmap on the same grid. numpy, scipy and SimpleITK only: it runs where torch is not installed
(the Slicer process) and takes well under a second for a 512×512×200 volume.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..arguments import add_view_arguments
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--result", required=True, help="labelmap written by `segment --evidence`")
    parser.add_argument("--output", required=True, help="new labelmap (.nrrd, .nii.gz, .mha)")
    parser.add_argument("--vote-threshold", type=float, default=None,
                        help="evidence contrast a proposal needs to be a candidate (default: the job's)")
    parser.add_argument("--seed-threshold", type=float, default=None,
                        help="contrast that makes a candidate a seed of the volume step (default: the job's)")
    parser.add_argument("--include", default=None, metavar="IDS", help="proposal ids to add, e.g. 3,7")
    parser.add_argument("--exclude", default=None, metavar="IDS", help="proposal ids to remove")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    add_view_arguments(parser)


def reselect_files(result: str | Path, output: str | Path, vote_threshold: float | None = None,
                   seed_threshold: float | None = None, include: str | None = None, exclude: str | None = None,
                   overwrite: bool = False) -> dict:
    """Re-select from a bundle on disk and write the labelmap; returns what the result event says."""
    import numpy as np

    from ...contract.errors import InvalidRequest
    from ...decision.reselection import SelectionBundle, parse_ids, reselect_labels
    from ...io.bundle import OUTPUT_NAMES, bundle_path, read_scores
    from ...io.images import check_output_path, write_labelmap

    result, output = Path(result).expanduser(), Path(output).expanduser()
    try:
        include_ids, exclude_ids = parse_ids(include), parse_ids(exclude)
    except ValueError as exc:
        raise InvalidRequest(f"--include/--exclude: {exc}.") from None
    bundle_files = (result, *(bundle_path(result, name) for name in OUTPUT_NAMES[1:]))
    check_output_path(output, inputs=bundle_files, overwrite=overwrite)  # never the result or its bundle
    document = read_scores(bundle_path(result, "scores"))
    proposals_path = bundle_path(result, "proposals")
    if not proposals_path.exists():
        raise InvalidRequest(f"The proposals volume {proposals_path} is missing.",
                             hint="Segment with --evidence to write the whole bundle.")
    labels_image = _read(result)
    proposals_image = _read(proposals_path)
    _check_same_grid(proposals_image, labels_image, proposals_path.name, result.name)
    check_output_path(output, labels_image.GetDimension(), inputs=bundle_files, overwrite=overwrite)
    proposals = _volume_array(proposals_image)  # integer ids as stored: no float copy of the volume
    try:
        bundle = SelectionBundle.from_document(proposals, document)
        start = time.perf_counter()
        labels = reselect_labels(bundle, vote_threshold, seed_threshold, include_ids, exclude_ids)
        seconds = time.perf_counter() - start
    except ValueError as exc:
        raise InvalidRequest(f"Cannot re-select {result.name}: {exc}.") from None
    write_labelmap(labels, labels_image, output, overwrite=overwrite)
    changed = int(np.count_nonzero((labels > 0) != (_volume_array(labels_image) > 0)))
    return {"event": "result", "output": str(output), "outputs": {"labelmap": str(output)},
            "voxels": int(np.count_nonzero(labels)), "voxels_changed": changed,
            "timings": {"select": round(seconds, 4)}}


def _check_same_grid(proposals, labels, proposals_name: str, labels_name: str) -> None:
    """The proposals must lie on the labelmap's grid: size, spacing, origin and direction. Equal
    sizes alone would let a volume from another scan (or a resampled copy) paint its ids onto
    the wrong voxels, and the new labelmap would be written on a grid nobody segmented."""
    import numpy as np

    from ...contract.errors import InvalidRequest

    checks = (("size", proposals.GetSize(), labels.GetSize()),
              ("spacing", proposals.GetSpacing(), labels.GetSpacing()),
              ("origin", proposals.GetOrigin(), labels.GetOrigin()),
              ("direction", proposals.GetDirection(), labels.GetDirection()))
    for what, theirs, ours in checks:
        if len(theirs) != len(ours) or not np.allclose(theirs, ours, rtol=1e-6, atol=1e-6):
            raise InvalidRequest(f"{proposals_name} and {labels_name} are not on the same grid: {what} "
                                 f"{_rounded(theirs)} against {_rounded(ours)}.",
                                 hint="Re-select with the proposals volume written beside this labelmap.")


def _rounded(values) -> tuple:
    return tuple(round(float(v), 6) for v in values)


def _read(path: Path):
    """A bundle volume as stored (SimpleITK image), with the input checks' messages."""
    import SimpleITK as sitk

    from ...contract.errors import InvalidImage
    from ...io.images import check_input_path

    check_input_path(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise InvalidImage(f"Could not read {path}.", hint="Pass the labelmap `segment --evidence` wrote.") from None


def _volume_array(image):
    """(K, J, I) array of a 2D or 3D image: a 2D image is a one-slice volume, as in the pipeline."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    return array[None] if image.GetDimension() == 2 else array


def main(args: argparse.Namespace) -> int:
    def work(emit, token) -> None:
        emit(reselect_files(args.result, args.output, args.vote_threshold, args.seed_threshold,
                            args.include, args.exclude, args.overwrite))

    return run_with_events(work, quiet=args.quiet, json_lines=args.json, command="reselect")
