"""Cancellation inside a network pass: a check before every block of a UNet or VAE.

One SD v1 UNet pass at 512 px takes seconds on a CPU; checking the cancel flag only between
steps would let a cancelled job run on for that long. Forward pre-hooks on the down, mid and up
blocks (and on their ResNet and transformer layers) raise `JobCancelled` at the next layer
boundary instead, for every method, without any method knowing about it. The hooks are attached
to the models a job uses for the length of that job and removed afterwards, so a warm model
carries nothing into the next job.
"""

from __future__ import annotations

from typing import Any, Callable

BLOCK_LISTS = ("down_blocks", "up_blocks")
INNER_LISTS = ("resnets", "attentions")


def block_modules(model: Any) -> list[Any]:
    """The blocks (and their layers) of every UNet/VAE-coder-like module inside `model`:
    modules with `down_blocks`/`up_blocks`/`mid_block` (diffusers' UNets, Encoder, Decoder)."""
    import torch

    found: list[Any] = []
    roots = [model] if isinstance(model, torch.nn.Module) else _modules_in(model)
    for root in roots:
        for module in root.modules():
            blocks = [b for name in BLOCK_LISTS for b in (getattr(module, name, None) or [])]
            mid = getattr(module, "mid_block", None)
            if isinstance(mid, torch.nn.Module):
                blocks.append(mid)
            for block in blocks:
                found.append(block)
                for name in INNER_LISTS:
                    found.extend(getattr(block, name, None) or [])
    unique = {id(m): m for m in found}
    return list(unique.values())


def _modules_in(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.nn.Module):
        return [value]
    if isinstance(value, (tuple, list)):
        return [m for v in value for m in _modules_in(v)]
    if isinstance(value, dict):
        return [m for v in value.values() for m in _modules_in(v)]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return [v for v in vars(value).values() if isinstance(v, torch.nn.Module)]
    return []


class CancelHooks:
    """Attach `check` as a pre-hook to each block of the models given to `attach`; `remove` undoes
    all of them. Attaching the same model twice hooks it once."""

    def __init__(self, check: Callable[[], None]):
        self._check = check
        self._handles: dict[int, Any] = {}

    def attach(self, model: Any) -> int:
        added = 0
        for module in block_modules(model):
            if id(module) not in self._handles:
                self._handles[id(module)] = module.register_forward_pre_hook(self._hook)
                added += 1
        return added

    def _hook(self, module: Any, args: Any) -> None:
        self._check()

    def remove(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()

    def __len__(self) -> int:
        return len(self._handles)
