"""Per-image work kept between jobs: VAE latents, text embeddings, ADZUS proposals.

A radiologist asks several questions about one image ("liver", then "liver tumour"); what does
not depend on the question is computed once. Entries are keyed by the *content* of what went
in (a hash of the normalised, letterboxed slice, which already encodes the intensity preset,
the slice axis and the model resolution), by the identity of the loaded model instance (so a
reloaded or different model never sees another's latents) and by every option that changes the
result. Like the model cache, a `Runner` activates its feature cache for the length of a job;
without one every call simply computes.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Hashable, Iterator

_ACTIVE: contextvars.ContextVar["FeatureCache | None"] = contextvars.ContextVar("diffusionseg_feature_cache",
                                                                                 default=None)
DEFAULT_BUDGET_BYTES = 1 << 30


def active_features() -> "FeatureCache | None":
    return _ACTIVE.get()


def content_hash(tensor: Any) -> str:
    """A digest of a tensor's values, shape and dtype (BLAKE2b, about 1 GB/s)."""
    import torch

    data = tensor.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tuple(data.shape)}|{data.dtype}|".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.dtype == torch.bfloat16
                  else data.numpy().tobytes())
    return digest.hexdigest()


def _nbytes(value: Any) -> int:
    if hasattr(value, "element_size"):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return 64


class FeatureCache:
    """A byte-bounded LRU map; thread-safe so `describe` can be read while a job runs."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    @contextmanager
    def activate(self) -> Iterator["FeatureCache"]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def get(self, key: tuple[Hashable, ...]) -> Any:
        kind = str(key[0])
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses[kind] = self.misses.get(kind, 0) + 1
                return None
            self._items.move_to_end(key)
            self.hits[kind] = self.hits.get(kind, 0) + 1
            return item[0]

    def put(self, key: tuple[Hashable, ...], value: Any) -> None:
        size = _nbytes(value)
        if size > self.budget_bytes:
            return
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.budget_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "budget_bytes": self.budget_bytes,
                    "hits": dict(self.hits), "misses": dict(self.misses)}


def cached(key: tuple[Hashable, ...], compute: Callable[[], Any]) -> Any:
    """`compute()` once per key while a feature cache is active."""
    cache = _ACTIVE.get()
    if cache is None:
        return compute()
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.put(key, value)
    return value


def cached_rows(prefix: tuple[Hashable, ...], inputs: Any, compute: Callable[[Any], Any]) -> Any:
    """`compute(inputs)` for a batch (first dimension), one cache entry per row: rows seen before
    (the same slice in another job, whatever its batch) are not computed again, the others are
    computed together in one call. Results are identical to `compute(inputs)` up to batching."""
    import torch

    cache = _ACTIVE.get()
    if cache is None:
        return compute(inputs)
    keys = [(*prefix, content_hash(row)) for row in inputs]
    found = [cache.get(key) for key in keys]
    missing = [i for i, value in enumerate(found) if value is None]
    if missing:
        fresh = compute(inputs[missing] if len(missing) < len(keys) else inputs)
        for row, i in enumerate(missing):
            found[i] = fresh[row:row + 1].clone()
            cache.put(keys[i], found[i])
    return torch.cat(found)
