"""What /v1/health reports: version, device, memory and the warm models (no token needed, so a
client can tell a starting server from a dead one; it reveals no job or patient data)."""

from __future__ import annotations

import os
from typing import Any

from .. import __version__


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"default": "cuda" if torch.cuda.is_available() else "cpu",
                            "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        info.update(cuda_name=torch.cuda.get_device_name(), gpu_free_bytes=int(free), gpu_total_bytes=int(total),
                    gpu_allocated_bytes=int(torch.cuda.memory_allocated()))
    return info


def memory_info() -> dict[str, Any]:
    import psutil

    virtual = psutil.virtual_memory()
    return {"ram_available_bytes": int(virtual.available), "ram_total_bytes": int(virtual.total),
            "process_rss_bytes": int(psutil.Process(os.getpid()).memory_info().rss)}


def health(runner: Any, service: Any) -> dict[str, Any]:
    warm = runner.describe()
    models = [{k: m[k] for k in ("kind", "key", "bytes", "in_use", "idle_seconds", "hits")}
              for m in warm["models"]["models"]]
    return {"status": "ok", "version": __version__, "device": device_info(), "memory": memory_info(),
            "models": models, "model_bytes": warm["models"]["bytes"],
            "model_budget_bytes": warm["models"]["budget_bytes"], "features": warm["features"],
            "jobs_run": warm["jobs_run"], **service.describe()}
