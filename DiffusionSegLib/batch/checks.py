"""What a cohort's plan refuses before anything runs, beyond each row's own request checks.

A batch job always runs with overwrite on (the plan decides per case whether a file may be
replaced), so the job's own "the output is the input" check sees only its own row. Here every
row's output is compared with every row's input — resolved, so `..`, symbolic links and hard
links cannot hide that two names are one file — and an output inside an input folder (a DICOM
series) is refused too. Outputs must stay inside --output-dir (a manifest row must not create
folders or files anywhere the user can write) and must name a labelmap format, so a typo is an
exit-2 message now, not a failure after the model has loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ..contract.errors import InvalidRequest
from ..io.images import OUTPUT_SUFFIXES


def label_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def confined_output(path: Path, output_dir: Path, source: str) -> Path:
    """`path` resolved, when it lies inside `output_dir` (resolved too) and names an output format
    (a labelmap, or .dcm for a DICOM SEG)."""
    resolved = path.resolve()
    root = output_dir.resolve()
    if resolved != root and root not in resolved.parents:
        raise InvalidRequest(f"{source}: the output {path} lies outside --output-dir {root}; every output is "
                             "written inside that folder.",
                             hint="Give the output relative to --output-dir, without '..' (sub-folders are fine).")
    suffix = label_suffix(resolved)
    if suffix not in OUTPUT_SUFFIXES:
        raise InvalidRequest(f"{source}: the output {path.name} is not an output format "
                             f"('{suffix or path.name}').", hint=f"Use one of {', '.join(OUTPUT_SUFFIXES)}.")
    return resolved


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def outputs_of(case: Any) -> list[Path]:
    """Every file the case's job may write: the labelmap and, with evidence, its bundle."""
    paths = [case.output]
    if case.request.get("evidence"):
        from ..io.bundle import OUTPUT_NAMES, bundle_path

        paths += [bundle_path(case.output, name) for name in OUTPUT_NAMES[1:]]
    return paths


def inputs_that_are_outputs(cases: Iterable[Any]) -> list[str]:
    """One message per output that is (or lies inside) some row's input, whatever --overwrite says
    (`cases`: manifest.Case, which imports this module)."""
    cases = list(cases)
    by_path: dict[str, str] = {}
    by_inode: dict[tuple[int, int], str] = {}
    folders: list[tuple[str, str]] = []
    for case in cases:
        image = Path(case.request["input"])
        real = os.path.realpath(image)
        by_path.setdefault(real, case.source)
        identity = _identity(image)
        if identity is not None:
            by_inode.setdefault(identity, case.source)
        if os.path.isdir(real):
            folders.append((real, case.source))
    errors = []
    for case in cases:
        for output in outputs_of(case):
            real = os.path.realpath(output)
            owner = by_path.get(real)
            identity = _identity(output)
            if owner is None and identity is not None:
                owner = by_inode.get(identity)   # a hard link (or a symlink) to an input
            if owner is not None:
                errors.append(f"{case.source}: the output {output} is the input image of {owner} (the same file); "
                              "writing it would destroy that image. Choose another output")
                continue
            inside = next((source for folder, source in folders if Path(folder) in Path(real).parents), None)
            if inside is not None:
                errors.append(f"{case.source}: the output {output} lies inside the input folder of {inside}; "
                              "writing there would change that case's series. Choose another output")
    return errors
