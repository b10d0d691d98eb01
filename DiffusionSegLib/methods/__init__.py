"""The method registry: every module in this package that defines a `Method` subclass with an
`info` is a method, found by name. Adding a method means adding one module here."""

from __future__ import annotations

import importlib
import pkgutil

from ..contract.errors import UnknownMethod
from .base import Method, MethodInfo, Param, SliceSegmentation

__all__ = ["Method", "MethodInfo", "Param", "SliceSegmentation", "available_methods", "get_method"]

_REGISTRY: dict[str, type[Method]] | None = None


def _discover() -> dict[str, type[Method]]:
    found: dict[str, type[Method]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Method) and value is not Method \
                    and isinstance(getattr(value, "info", None), MethodInfo):
                found[value.info.name] = value
    return dict(sorted(found.items()))


def available_methods() -> dict[str, type[Method]]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _discover()
    return _REGISTRY


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    key = (name or "").strip().lower()
    if key not in methods:
        raise UnknownMethod(
            f"Unknown method '{name}'. Available methods: {', '.join(methods) or 'none'}.",
            hint="Run `python -m DiffusionSegLib methods` to list them.")
    return methods[key]
