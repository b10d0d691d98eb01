"""Whether a Hugging Face repo can be loaded now, decided once, before any `from_pretrained`.

Left alone, every component load retries an unreachable hub several times with back-off (about
half a minute per component) and then reports a missing config.json, which points the wrong way.
Instead, per repo and process: offline mode (HF_HUB_OFFLINE=1) or one request with a short
timeout and no retry decides. Unreachable or offline with the repo in the local cache → load
from the cache only (no further network attempts); not cached → one error that says the hub
could not be reached (or offline mode is on) and how to get the model onto this machine.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..contract.errors import ModelNotFound

PROBE_TIMEOUT_S = 5.0
_decisions: dict[tuple, dict[str, Any]] = {}


def download_commands(repo: str) -> str:
    """The download command of the installed huggingface_hub first (`hf` since 1.0), the other too."""
    import huggingface_hub

    new, old = f"`hf download {repo}`", f"`huggingface-cli download {repo}`"
    if int(huggingface_hub.__version__.split(".")[0]) >= 1:
        return f"{new} (with huggingface_hub < 1.0: {old})"
    return f"{old} (with huggingface_hub >= 1.0: {new})"


def download_hint(repo: str) -> str:
    return (f"On a machine with internet run {download_commands(repo)}, then copy its Hugging Face cache "
            f"(~/.cache/huggingface, or HF_HOME) here and set HF_HUB_OFFLINE=1; or pass a local diffusers "
            f"folder with --model.")


def is_cached(repo: str) -> bool:
    """Whether the standard cache holds a snapshot of `repo` (what an offline load can use)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def probe(repo: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One HEAD request to the hub's model API, no retries: None when the hub answered (any HTTP
    status, even 401/404: it is reachable and from_pretrained will say what is wrong), else why not."""
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{repo}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{constants.ENDPOINT}: {reason}"


def hub_access(repo: str) -> dict[str, Any]:
    """Extra `from_pretrained` options for a hub repo ({}, or the cache only: local_files_only and
    the cache that was checked), or
    ModelNotFound when it can be neither downloaded nor found in the cache."""
    from huggingface_hub import constants

    key = (repo, constants.ENDPOINT, bool(constants.HF_HUB_OFFLINE), str(constants.HF_HUB_CACHE))
    if key in _decisions:
        return _decisions[key]
    cached = is_cached(repo)
    where = f"the cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise ModelNotFound(f"Offline mode (HF_HUB_OFFLINE=1) is on and '{repo}' is not in {where}, so it "
                                f"cannot be loaded.", hint=download_hint(repo))
        decision: dict[str, Any] = {"local_files_only": True, "cache_dir": constants.HF_HUB_CACHE}
    else:
        unreachable = probe(repo)
        if unreachable and not cached:
            raise ModelNotFound(f"Could not reach the Hugging Face hub ({unreachable}) and '{repo}' is not in "
                                f"{where}.", hint=download_hint(repo) + " Behind a proxy, set HTTPS_PROXY.")
        decision = {"local_files_only": True, "cache_dir": constants.HF_HUB_CACHE} if unreachable else {}
    _decisions[key] = decision
    return decision
