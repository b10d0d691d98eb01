"""Checkpoint folders and resumable training state, safetensors only.

A checkpoint folder holds `config.json` (what to rebuild and how it was trained), weight files
in safetensors (diffusers sub-folders where a diffusers class is involved) and `README.md`, a
model card stating data, split, metrics and the exact command. A training run also keeps
`training_state/` (raw weights, EMA weights, optimizer moments, step) so `--resume` continues
where a run stopped - all tensors, no pickle, so a shared checkpoint can never execute code.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_DIR = "training_state"


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def command_line() -> str:
    """The command that produced a checkpoint, for the model card."""
    argv = sys.argv[:]
    if argv and argv[0].endswith("__main__.py"):
        argv = ["python", "-m", "DiffusionSegLib"] + argv[1:]
    return " ".join(shlex.quote(a) for a in argv)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer state into named tensors + a JSON-able rest (param groups)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_training_state(folder: Path, weights: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None,
                        optimizer: torch.optim.Optimizer, info: dict, name: str = STATE_DIR) -> None:
    """Everything `--resume` needs, written to a temporary folder first and then swapped in,
    so a run killed mid-save still has the previous state. `name`: the state's folder (one per
    stage that can be resumed)."""
    final = folder / name
    temp = folder / (name + ".tmp")
    temp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(temp / "model.safetensors"))
    if ema is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in ema.items()}, str(temp / "ema.safetensors"))
    tensors, rest = optimizer_tensors(optimizer)
    save_file(tensors, str(temp / "optimizer.safetensors"))
    write_json(temp / "state.json", {**info, "optimizer": rest})
    old = folder / (name + ".old")
    if final.exists():
        if old.exists():   # left by an earlier run ended between the renames; `final` is newer
            shutil.rmtree(old)
        final.rename(old)
    temp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def load_training_state(folder: Path, name: str = STATE_DIR) -> tuple[dict, dict | None, dict, dict] | None:
    """(weights, ema or None, optimizer tensors, info) or None when the folder has no state."""
    state = folder / name
    if not (state / "state.json").is_file():
        # A run ended (cancel watchdog, power cut) between the two renames of
        # save_training_state: the previous, complete state is still there under its old name.
        state = folder / (name + ".old")
        if not (state / "state.json").is_file():
            return None
    info = json.loads((state / "state.json").read_text())
    ema = load_file(str(state / "ema.safetensors")) if (state / "ema.safetensors").is_file() else None
    return load_file(str(state / "model.safetensors")), ema, load_file(str(state / "optimizer.safetensors")), info


def _short(value: Any) -> Any:
    """Case lists in full when short, else count and range (the full list is in config.json)."""
    if isinstance(value, list) and len(value) > 20:
        return f"{len(value)} cases: {value[0]} … {value[-1]}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return value


def write_model_card(folder: Path, title: str, summary: str, data: dict, split: dict, metrics: dict,
                     training: dict, command: str | None = None) -> None:
    """README.md for a checkpoint: what it is, what it saw, how well it did, how to reproduce."""
    def table(values: dict) -> str:
        rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
        return "| item | value |\n|---|---|\n" + rows
    text = f"""# {title}

{summary}

Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by DiffusionSegLib.
Research software, not a medical device.

## Data
{table(data)}

## Split
{table({k: _short(v) for k, v in split.items()})}

## Validation metrics
{table(metrics)}

## Training
{table(training)}

## Command
```
{command or command_line()}
```
"""
    (folder / "README.md").write_text(text)
