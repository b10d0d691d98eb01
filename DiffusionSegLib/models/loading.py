"""`from_pretrained` for every weighted component, with safetensors only and errors for users.

Every failure becomes ModelNotFound/ModelLoadFailed with a message that says what was looked
for and how to provide it; huggingface_hub honours HF_HUB_OFFLINE, HF_HOME and HF_HUB_CACHE,
so offline machines work from the standard cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..contract.errors import ModelLoadFailed, ModelNotFound
from .references import describe_search, is_local_reference


def _not_found(reference: str, what: str, detail: str = "") -> ModelNotFound:
    from .hub import download_hint

    hint = download_hint(reference if not is_local_reference(reference) else "<repo id>")
    message = f"Could not find {what} in {describe_search(reference)}."
    if detail:
        message += f" ({detail})"
    return ModelNotFound(message, hint=hint)


def load_component(cls: Any, reference: str, subfolder: str | None, dtype: torch.dtype | None = None,
                   **kwargs: Any) -> Any:
    """`cls.from_pretrained` with safetensors only and errors translated for users."""
    local = is_local_reference(reference)
    if local:
        root = Path(reference).expanduser()
        if not root.is_dir():
            raise _not_found(reference, "a model folder")
        reference = str(root)
        if subfolder and not (root / subfolder).is_dir():
            raise _not_found(reference, f"the '{subfolder}' component",
                             "the folder has no such subfolder; is it in diffusers layout?")
    options: dict[str, Any] = dict(kwargs)
    if subfolder:
        options["subfolder"] = subfolder
    if dtype is not None:
        options.setdefault("torch_dtype", dtype)
    is_weighted = hasattr(cls, "save_pretrained") and not _is_config_only(cls)
    if is_weighted:
        options["use_safetensors"] = True
    if not local:  # one reachability decision per repo: no retry storm against an unreachable hub
        from .hub import hub_access

        options.update(hub_access(reference))
    try:
        return cls.from_pretrained(reference, **options)
    except (OSError, EnvironmentError, ValueError) as exc:
        text = str(exc)
        lowered = text.lower()
        if "safetensors" in lowered and ("not found" in lowered or "no file" in lowered
                                         or "could not find" in lowered or "does not appear" in lowered):
            raise ModelLoadFailed(
                f"{describe_search(reference)} has no safetensors weights for '{subfolder or cls.__name__}'; "
                "DiffusionSeg never loads pickled (.bin/.ckpt) weights.",
                hint="Convert the weights to safetensors or use a model that provides them.") from None
        if any(s in lowered for s in ("not found", "does not appear", "no such file", "offline",
                                      "connect", "couldn't", "could not", "is not a local folder",
                                      "repository not found", "not a valid model identifier")):
            raise _not_found(reference, f"'{subfolder or cls.__name__}'", text.splitlines()[0][:300]) from None
        raise ModelLoadFailed(f"Loading '{subfolder or cls.__name__}' from {describe_search(reference)} failed: "
                              f"{text.splitlines()[0][:300]}") from None


def _is_config_only(cls: Any) -> bool:
    name = cls.__name__
    return name.endswith("Scheduler") or "Tokenizer" in name


def cast_module(module: Any, dtype: torch.dtype, device: torch.device | None = None) -> Any:
    """`module.to(device, dtype)` without diffusers' warning about modules to keep in fp32 when
    the model names none (diffusers warns on every cast of an SD UNet, whose list is empty)."""
    import logging

    logger = logging.getLogger("diffusers.models.modeling_utils")
    quiet = not getattr(module, "_keep_in_fp32_modules", None)
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        return module.to(device, dtype) if device is not None else module.to(dtype)
    finally:
        logger.setLevel(level)


def component_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """The VAE is loaded and kept in fp32 (SD's VAE overflows in fp16 on bright images); its
    encoder may compute in bf16 through autocast (`encode_image`, dtypes.py). Every other
    network runs in the compute dtype."""
    return torch.float32 if name == "vae" else dtype
