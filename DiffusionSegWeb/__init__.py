"""DiffusionSeg in the browser: a thin trame-slicer front end, one more client of `serve`.

The page shows Slicer's own slice and 3D views (rendered on the server by slicer-core, streamed as
images by trame-slicer); the segmentation work is done by a DiffusionSegLib `serve` process, local
or remote. The Slicer-side logic that turns volume nodes into job inputs and result labelmaps into
named, coloured segments with standard terminology is the module's own DiffusionSegSlicerLib, used
here unchanged: this is the one place its folder is put on the import path.
"""

from __future__ import annotations

import sys
from pathlib import Path

SLICER_MODULE_DIR = Path(__file__).resolve().parent.parent / "DiffusionSeg"
if str(SLICER_MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(SLICER_MODULE_DIR))
