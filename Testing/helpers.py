"""Synthetic images for tests (they live in the library, where the demo uses them too):
nothing here depends on data outside the repository."""

from DiffusionSegLib.testing.images import ct_like_volume, oblique_direction, rgb_image  # noqa: F401
