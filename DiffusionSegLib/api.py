"""The backend as the Slicer module and the web app see it: one stable import path.

The Slicer process and the browser app import from here and from nowhere else in
DiffusionSegLib (Testing/test_architecture.py checks it), so moving a module inside the backend
never touches them. Everything here is light: numpy, scipy, SimpleITK and the standard library,
never torch, diffusers or transformers — those load only in the worker that runs the job.
"""

from __future__ import annotations

from . import __version__
from .contract.choices import DEVICES, DTYPE_CHOICES, SLICE_AXES, presets
from .contract.errors import EXIT_CANCELLED, EXIT_TRAINING_FELL_SHORT
from .contract.partial import apply_partial, decode_partial
from .contract.request import JobRequest, PipelineOptions
from .decision.reselection import SelectionBundle, reselect_labels, scores_document, volume_proposals
from .decision.selection import SelectionParams, SliceScores, proposal_table, select_labels, volume_reference
from .imaging.postprocess import match_labels_across_slices
from .io.bundle import OUTPUT_NAMES, bundle_path, stage_bundle
from .io.dicom_seg import SegInfo
from .io.dicom_series import is_dicom_file
from .io.images import write_labelmap
from .io.seg_export import write_seg_for_series
from .io.terminology import TERMINOLOGY_FILE, normalize_term, segment_codes
from .methods import available_methods
from .serve.client import ServiceClient, ServiceError

# What a worker process runs (`<python> -c "...; from <module> import main; ..."`), and where the
# Slicer self-test's tiny random-weight model comes from (run inside that worker, not here).
WORKER_MODULE = "DiffusionSegLib.worker_entry"
TINY_MODEL_MODULE = "DiffusionSegLib.testing.models"

__all__ = [
    "DEVICES", "DTYPE_CHOICES", "EXIT_CANCELLED", "EXIT_TRAINING_FELL_SHORT", "OUTPUT_NAMES", "SLICE_AXES",
    "TERMINOLOGY_FILE", "TINY_MODEL_MODULE", "WORKER_MODULE",
    "JobRequest", "PipelineOptions", "SegInfo", "SelectionBundle", "SelectionParams", "ServiceClient", "ServiceError",
    "SliceScores", "__version__", "apply_partial", "available_methods", "bundle_path", "decode_partial",
    "is_dicom_file", "match_labels_across_slices", "normalize_term", "presets", "proposal_table", "reselect_labels",
    "scores_document", "segment_codes", "select_labels", "stage_bundle", "volume_proposals", "volume_reference",
    "write_labelmap", "write_seg_for_series",
]
