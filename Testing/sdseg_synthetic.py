"""Synthetic image/mask pairs for the SDSeg tests (in the library, where `demo` uses them too)."""

from DiffusionSegLib.testing.images import disc_pairs, write_png_pairs  # noqa: F401
