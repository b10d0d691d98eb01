"""Aspect-preserving resize + centred padding to the model's square input, and its inverse.

Medical slices are rarely square (a 765×572 dermoscopy image, a 512×120 coronal CT slice) and
their pixels rarely are either (a coronal slice of 0.7 × 0.7 × 5 mm CT has pixels seven times
taller than wide). Stretching them would distort shapes the diffusion model has learned, so the
slice is resized to square *physical* pixels — its physical height and width keep their ratio
on the canvas — then padded. The inverse crops the exact region the image occupied and resizes
it back to the original pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Letterbox:
    height: int
    width: int
    size: int
    resized_height: int
    resized_width: int
    top: int
    left: int

    @classmethod
    def fit(cls, height: int, width: int, size: int, spacing: tuple[float, float] = (1.0, 1.0)) -> "Letterbox":
        """The box for a (height, width) slice whose pixels are `spacing` = (row, column) mm apart."""
        row, column = (float(v) if v and v > 0 else 1.0 for v in spacing)
        extent_h, extent_w = height * row, width * column
        scale = size / max(extent_h, extent_w)   # canvas pixels per mm
        resized_h = max(1, min(size, round(extent_h * scale)))
        resized_w = max(1, min(size, round(extent_w * scale)))
        return cls(height, width, size, resized_h, resized_w, (size - resized_h) // 2, (size - resized_w) // 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] → (B, C, S, S) in [0, 1]. Padding repeats the edge pixels: a constant border would
        add a strong artificial edge that self-attention happily turns into a segment."""
        resized = F.interpolate(images.float(), size=(self.resized_height, self.resized_width),
                                mode="bilinear", align_corners=False,
                                antialias=self.resized_height < self.height or self.resized_width < self.width)
        resized = resized.clamp(0.0, 1.0)   # the antialiasing filter rounds a hair past [0, 1]
        pad = (self.left, self.size - self.resized_width - self.left,
               self.top, self.size - self.resized_height - self.top)
        return F.pad(resized, pad, mode="replicate") if any(pad) else resized

    def valid_mask(self) -> torch.Tensor:
        """(S, S) bool: True where the image is, False on padding."""
        mask = torch.zeros(self.size, self.size, dtype=torch.bool)
        mask[self.top:self.top + self.resized_height, self.left:self.left + self.resized_width] = True
        return mask

    def _crop(self, maps: torch.Tensor) -> torch.Tensor:
        return maps[..., self.top:self.top + self.resized_height, self.left:self.left + self.resized_width]

    def inverse_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, S, S) integer labels → (B, H, W), nearest neighbour with half-pixel centres."""
        cropped = self._crop(labels).unsqueeze(1).float()
        restored = F.interpolate(cropped, size=(self.height, self.width), mode="nearest-exact")
        return restored[:, 0].round().to(labels.dtype)

    def inverse_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) continuous maps (probabilities) → (B, C, H, W), bilinear."""
        return F.interpolate(self._crop(maps).float(), size=(self.height, self.width),
                             mode="bilinear", align_corners=False)
