"""What a model reference names, before anything is loaded.

A reference is a Hugging Face repo id ("CompVis/stable-diffusion-v1-4"), a local folder in
diffusers layout, or a model the loader builds itself: "random:<architecture>[:<image size>]"
(the real shapes with random weights, for `benchmark`) or "planted[:<image size>]" (the test
model with a known answer, planted.py). A path-looking reference is never sent to the
hub, so a typo cannot become a download.
"""

from __future__ import annotations

import os
from pathlib import Path

# "random:<architecture>[:<image size>]" builds an architecture from data/architectures with random
# weights: real shapes and FLOPs for `benchmark`, without downloading anything. Never for results.
RANDOM_PREFIX = "random:"
PLANTED = "planted"   # the planted test model (planted.py): a known right answer, never for results


def is_built_in(reference: str) -> bool:
    """A reference the loader builds itself instead of reading weights."""
    return reference.startswith(RANDOM_PREFIX) or reference == PLANTED or reference.startswith(PLANTED + ":")


def is_local_reference(reference: str) -> bool:
    """A path-looking reference is never sent to the hub: a typo must not become a download."""
    return reference.startswith((".", "/", "~")) or os.sep in reference.strip("/").split("/", 1)[-1] \
        or Path(reference).expanduser().exists() or (len(reference) > 1 and reference[1] == ":")


def describe_search(reference: str) -> str:
    from huggingface_hub import constants

    if is_local_reference(reference):
        return f"local folder {Path(reference).expanduser().resolve()}"
    offline = "on" if constants.HF_HUB_OFFLINE else "off"
    return f"Hugging Face repo '{reference}' (cache {constants.HF_HUB_CACHE}, HF_HUB_OFFLINE {offline})"


def cache_identity(reference: str) -> str:
    """What makes two loads the same model: the resolved folder and its files' sizes and times
    (a checkpoint retrained in place is loaded again), or the hub id / random architecture."""
    if is_built_in(reference) or not is_local_reference(reference):
        return reference
    import hashlib

    root = Path(reference).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode())
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.suffix in (".json", ".safetensors", ".txt") and path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{root}#{digest.hexdigest()[:12]}"
