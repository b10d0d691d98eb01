"""Warm models: loaded once per (kind, reference, device, dtype), kept within a memory budget.

Loading SD v1.x costs seconds to minutes (4 GB of safetensors, moved to the device); a warm
worker (`serve`, a `batch` worker) answers the next question without paying it again. The
loaders in models/stable_diffusion.py, methods/sdseg/checkpoint.py and methods/diffugts/heads.py go through `cached_load`; while a
`Runner` runs a job its `ModelCache` is *active* (a context variable, so it follows the job's
thread and nothing leaks between runners or tests). Without an active cache, `cached_load`
simply calls the loader: library users and one-off scripts behave as before.

Entries used by the running job are pinned and never evicted; the others are dropped least
recently used first when the budget is exceeded, and after `idle_seconds` without use.
"""

from __future__ import annotations

import contextvars
import dataclasses
import gc
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator


@dataclasses.dataclass(eq=False)
class Session:
    """One job's use of a cache: the keys it pinned and what to do on first use of each."""

    on_use: Callable[[Any], None] | None = None
    used: set = dataclasses.field(default_factory=set)


_ACTIVE: contextvars.ContextVar["tuple[ModelCache, Session] | None"] = contextvars.ContextVar(
    "diffusionseg_model_cache", default=None)


def cached_load(key: tuple[Hashable, ...], loader: Callable[[], Any]) -> Any:
    """`loader()` once per key while a cache is active; a plain call otherwise."""
    active = _ACTIVE.get()
    if active is None:
        return loader()
    cache, session = active
    return cache.get(key, loader, session)


def object_bytes(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by the tensors of a loaded object (modules, dataclasses of modules, tuples…).

    Parameters and buffers are counted once even when modules share them; CPU and GPU bytes are
    counted alike (the budget is per device: a cache serves one device in practice)."""
    import torch

    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        total = 0
        for tensor in list(value.parameters()) + list(value.buffers()):
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
        return total
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(object_bytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list)):
        return sum(object_bytes(v, seen) for v in value)
    if isinstance(value, dict):
        return sum(object_bytes(v, seen) for v in value.values())
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sum(object_bytes(v, seen) for v in vars(value).values()
                   if isinstance(v, (torch.nn.Module, torch.Tensor)))
    return 0


@dataclasses.dataclass
class CacheEntry:
    key: tuple[Hashable, ...]
    value: Any
    nbytes: int
    load_seconds: float
    last_used: float
    pins: int = 0
    hits: int = 0

    def describe(self) -> dict[str, Any]:
        kind, *rest = self.key
        return {"kind": kind, "key": [str(part) for part in rest], "bytes": self.nbytes,
                "load_seconds": round(self.load_seconds, 3), "hits": self.hits,
                "idle_seconds": round(time.monotonic() - self.last_used, 1), "in_use": self.pins > 0}


class ModelCache:
    """LRU of loaded models within `budget_bytes` (None: unbounded), unloaded after `idle_seconds`
    (None: never). Thread-safe: the job thread loads while an HTTP thread reads `describe`."""

    def __init__(self, budget_bytes: int | None = None, idle_seconds: float | None = None):
        self.budget_bytes = budget_bytes
        self.idle_seconds = idle_seconds
        self._entries: OrderedDict[tuple, CacheEntry] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    # -- use -----------------------------------------------------------------------------------

    @contextmanager
    def session(self, on_use: Callable[[Any], None] | None = None) -> Iterator[set[tuple]]:
        """Activate this cache for the calling context; every entry the block uses stays pinned
        until it ends, and `on_use(model)` runs the first time the block uses each one (the
        runner hooks cancellation onto it). Yields the set of keys used."""
        session = Session(on_use)
        token = _ACTIVE.set((self, session))
        try:
            yield session.used
        finally:
            _ACTIVE.reset(token)
            with self._lock:
                for key in session.used:
                    entry = self._entries.get(key)
                    if entry is not None:
                        entry.pins -= 1
                        entry.last_used = time.monotonic()
            self.enforce_budget()

    def get(self, key: tuple[Hashable, ...], loader: Callable[[], Any], session: Session | None = None) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                entry.hits += 1
                self.hits += 1
                self._pin(entry, session)
                return entry.value
        # Load outside the lock: `describe` (health checks) must answer during a long load. Jobs
        # run one at a time, so two loads of the same key do not race in practice; if they did,
        # the second result simply replaces the first.
        start = time.perf_counter()
        value = loader()
        entry = CacheEntry(key, value, object_bytes(value), time.perf_counter() - start, time.monotonic())
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self.loads += 1
            self._pin(entry, session)
        self.enforce_budget()
        return value

    @staticmethod
    def _pin(entry: CacheEntry, session: Session | None) -> None:
        if session is not None and entry.key not in session.used:
            session.used.add(entry.key)
            entry.pins += 1
            if session.on_use is not None:
                session.on_use(entry.value)

    # -- unloading -----------------------------------------------------------------------------

    def enforce_budget(self) -> list[tuple]:
        """Drop unpinned entries, least recently used first, until the total fits the budget."""
        dropped = []
        with self._lock:
            if self.budget_bytes is None:
                return dropped
            for key in list(self._entries):
                if self.total_bytes() <= self.budget_bytes:
                    break
                if self._entries[key].pins == 0:
                    del self._entries[key]
                    dropped.append(key)
        self._released(dropped)
        return dropped

    def unload_idle(self, now: float | None = None) -> list[tuple]:
        """Drop unpinned entries unused for `idle_seconds` (called periodically by `serve`)."""
        if self.idle_seconds is None:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            dropped = [key for key, entry in self._entries.items()
                       if entry.pins == 0 and now - entry.last_used >= self.idle_seconds]
            for key in dropped:
                del self._entries[key]
        self._released(dropped)
        return dropped

    def clear(self) -> None:
        with self._lock:
            dropped = [key for key, entry in self._entries.items() if entry.pins == 0]
            for key in dropped:
                del self._entries[key]
        self._released(dropped)

    def _released(self, dropped: list[tuple]) -> None:
        if not dropped:
            return
        self.evictions += len(dropped)
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - the cache is only used where torch is
            pass

    # -- reporting -----------------------------------------------------------------------------

    def total_bytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def values(self) -> list[Any]:
        with self._lock:
            return [entry.value for entry in self._entries.values()]

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"models": [entry.describe() for entry in self._entries.values()],
                    "bytes": self.total_bytes(), "budget_bytes": self.budget_bytes,
                    "idle_seconds": self.idle_seconds, "loads": self.loads, "hits": self.hits,
                    "evictions": self.evictions}
