"""DiffusionSeg in the browser: a thin trame-slicer front end, one more client of `serve`.

The page shows Slicer's own slice and 3D views (rendered on the server by slicer-core, streamed as
images by trame-slicer); the segmentation work is done by a DiffusionSegLib `serve` process, local
or remote. The Slicer-side logic that turns volume nodes into job inputs and result labelmaps into
named, coloured segments with standard terminology is the module's own DiffusionSegSlicerLib, used
here unchanged: this is the one place its folder is put on the import path (the `web` extra
installs it as a package too, so `python -m DiffusionSegWeb` runs from any folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

SLICER_MODULE_DIR = Path(__file__).resolve().parent.parent / "DiffusionSeg"
# In a source tree (or an editable install) the module's folder is beside this package; an
# installed wheel carries DiffusionSegSlicerLib as a package of its own.
if (SLICER_MODULE_DIR / "DiffusionSegSlicerLib").is_dir() and str(SLICER_MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(SLICER_MODULE_DIR))
