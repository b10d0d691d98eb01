"""What kind of model a local folder holds, read from its small JSON files before any weights.

Loading a folder of the wrong kind (an SDSeg checkpoint given to ADZUS, a Stable Diffusion model
given to SDSeg) would otherwise end in dozens of "weights not used / newly initialised" warnings
and a shape error. One look at config.json / model_index.json names the kind, and the message
says which method (or option) the folder is for.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..contract.errors import ModelLoadFailed

STABLE_DIFFUSION = "stable-diffusion"
SDSEG = "sdseg"
DIFFUGTS_HEADS = "diffugts-heads"

NAMES = {STABLE_DIFFUSION: "a Stable Diffusion (diffusers text-to-image) model",
         SDSEG: "an SDSeg checkpoint", DIFFUGTS_HEADS: "a folder of DiffuGTS heads"}
ADVICE = {STABLE_DIFFUSION: "use it with --method adzus or --method diffugts, "
                            "or as `train sdseg --pretrained {folder}`",
          SDSEG: "use --method sdseg --model {folder}",
          DIFFUGTS_HEADS: "use --method diffugts --param heads={folder}, "
                          "with the base model the heads were trained on"}
_FORMATS = {"diffusionseg.sdseg": SDSEG, "diffugts-heads": DIFFUGTS_HEADS}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def folder_kind(folder: str | Path) -> str | None:
    """SDSEG, DIFFUGTS_HEADS, STABLE_DIFFUSION or None (unknown: let the loader decide)."""
    folder = Path(folder).expanduser()
    kind = _FORMATS.get(str(_json(folder / "config.json").get("format")))
    if kind:
        return kind
    index = _json(folder / "model_index.json")
    unet = _json(folder / "unet" / "config.json").get("_class_name")
    if index.get("unet") or (unet == "UNet2DConditionModel" and (folder / "text_encoder").is_dir()):
        return STABLE_DIFFUSION
    return None


def check_folder_kind(folder: str | Path, expected: str) -> None:
    """ModelLoadFailed naming the folder's kind and the right use when it is not `expected`."""
    kind = folder_kind(folder)
    if kind is None or kind == expected:
        return
    shown = Path(folder).expanduser()
    raise ModelLoadFailed(f"{shown} is {NAMES[kind]}, not {NAMES[expected]}: {ADVICE[kind].format(folder=shown)}.",
                          hint=f"This method needs {NAMES[expected]}.")
