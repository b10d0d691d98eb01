"""The optional trained heads of DiffuGTS: everything trainable sits here, the diffusion model
and text encoder stay frozen.

- `AOVAAdapter`: frozen multi-scale VAE-encoder features and the text embeddings of the paired
  prompts → per-pixel anomaly logit. Per scale, a residual adapter on the visual features and an
  MLP on the text vectors meet in a cosine-similarity map per prompt (CLIP-style temperature);
  the maps are averaged over scales and the anomaly logit is the log-odds of the softmax over
  the two prompts, so the map stays *open-vocabulary*: the prompts are inputs, not classes.
- `ResidualHead`: "residual learning" - a small dilated CNN on [P, F, R, anomaly map] that
  replaces the fixed Otsu cut when labelled tumours are available.

Saved as a folder: config.json + heads.safetensors + README.md (model card).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...contract.errors import ModelLoadFailed, ModelNotFound

HEADS_FORMAT = "diffugts-heads"
HEADS_VERSION = 1
WEIGHTS_FILE = "heads.safetensors"
RESIDUAL_CHANNELS = 4  # pixel residual, feature residual, fused residual, anomaly map


class _VisualAdapter(nn.Module):
    """Projection then y = x + α·MLP(x): starts close to a plain projection of the frozen
    features (α = 0.1, as in the unofficial port's residual adapter)."""

    def __init__(self, channels: int, dim: int, alpha: float):
        super().__init__()
        self.project = nn.Conv2d(channels, dim, kernel_size=3, padding=1)
        self.mlp = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.alpha = alpha

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.project(features)
        return x + self.alpha * self.mlp(x)


class AOVAAdapter(nn.Module):
    def __init__(self, feature_channels: Sequence[int], text_dim: int, dim: int = 64, alpha: float = 0.1,
                 temperature: float = 0.07):
        super().__init__()
        self.feature_channels = list(feature_channels)
        self.text_dim, self.dim, self.alpha = text_dim, dim, alpha
        self.visual = nn.ModuleList(_VisualAdapter(c, dim, alpha) for c in self.feature_channels)
        self.text = nn.ModuleList(nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim))
                                  for _ in self.feature_channels)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def config(self) -> dict[str, Any]:
        return {"feature_channels": self.feature_channels, "text_dim": self.text_dim, "dim": self.dim,
                "alpha": self.alpha}

    def forward(self, features: Sequence[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """features: [(B, C_i, h_i, w_i)]; text: (B, 2, D) pooled [normal, anomaly] embeddings.
        Returns the anomaly logit (B, h, w) on the finest feature grid."""
        size = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
        total = None
        scale = self.logit_scale.exp().clamp(max=100.0)
        for feature, visual, text_mlp in zip(features, self.visual, self.text):
            v = F.normalize(visual(feature.float()), dim=1)
            t = F.normalize(text_mlp(text.float()), dim=-1)
            logits = scale * torch.einsum("bchw,bkc->bkhw", v, t)
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
            total = logits if total is None else total + logits
        total = total / len(features)
        return total[:, 1] - total[:, 0]


class ResidualHead(nn.Module):
    """Dilated CNN (receptive field 15 px) on the residual maps → refined-mask logit."""

    def __init__(self, in_channels: int = RESIDUAL_CHANNELS, width: int = 16):
        super().__init__()
        self.in_channels, self.width = in_channels, width
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4), nn.GELU(),
            nn.Conv2d(width, 1, 1))

    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "width": self.width}

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        return self.net(residuals.float())[:, 0]


def residual_inputs(pixel: torch.Tensor, feature: torch.Tensor, fused: torch.Tensor,
                    anomaly: torch.Tensor) -> torch.Tensor:
    """Stack the (B, H, W) maps in the channel order the head was trained with."""
    return torch.stack([pixel, feature, fused, anomaly], dim=1).float()


def save_heads(directory: str | Path, config: dict[str, Any], adapter: AOVAAdapter | None,
               residual_head: ResidualHead | None, model_card: str, image_head: nn.Module | None = None) -> Path:
    """Write config.json, heads.safetensors and README.md (the model card)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    full = {"format": HEADS_FORMAT, "version": HEADS_VERSION, **config,
            "adapter": adapter.config() if adapter is not None else None,
            "residual_head": residual_head.config() if residual_head is not None else None,
            "image_head": image_head.config() if image_head is not None else None}
    for prefix, module in (("adapter.", adapter), ("residual_head.", residual_head), ("image_head.", image_head)):
        if module is not None:
            tensors.update({prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / "config.json").write_text(json.dumps(full, indent=2))
    (directory / "README.md").write_text(model_card)
    return directory


def load_heads(directory: str | Path, device: torch.device | str = "cpu"
               ) -> tuple[dict[str, Any], AOVAAdapter | None, ResidualHead | None]:
    """Read a heads folder; clear errors for a missing folder or a foreign/incomplete one.
    Within a runner's job the heads come from its cache (see model_cache.py)."""
    from ...models.references import cache_identity
    from ...runtime.model_cache import cached_load

    key = ("diffugts-heads", cache_identity(str(directory)), str(device))
    return cached_load(key, lambda: _load_heads(directory, device))


def _load_heads(directory: str | Path, device: torch.device | str
                ) -> tuple[dict[str, Any], AOVAAdapter | None, ResidualHead | None]:
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    config_path, weights_path = directory / "config.json", directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelNotFound(f"No DiffuGTS heads in {directory.resolve()} (looked for config.json and "
                            f"{WEIGHTS_FILE}).", hint="Train them with `python -m DiffusionSegLib train "
                                                      "diffugts ...` or leave the 'heads' parameter empty.")
    config = json.loads(config_path.read_text())
    if config.get("format") != HEADS_FORMAT:
        raise ModelLoadFailed(f"{directory} is not a DiffuGTS heads folder (format {config.get('format')!r}).")
    tensors = load_file(str(weights_path), device="cpu")
    adapter = residual_head = None
    try:
        if config.get("adapter"):
            adapter = AOVAAdapter(**config["adapter"])
            adapter.load_state_dict({k[len("adapter."):]: v for k, v in tensors.items()
                                     if k.startswith("adapter.")})
            adapter = adapter.to(device).eval()
        if config.get("residual_head"):
            residual_head = ResidualHead(**config["residual_head"])
            residual_head.load_state_dict({k[len("residual_head."):]: v for k, v in tensors.items()
                                           if k.startswith("residual_head.")})
            residual_head = residual_head.to(device).eval()
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadFailed(f"The DiffuGTS heads in {directory} do not match their config: "
                              f"{str(exc).splitlines()[0]}") from None
    return config, adapter, residual_head


def load_image_head(directory: str | Path, device: torch.device | str = "cpu") -> nn.Module | None:
    """The image-level anomaly head of a heads folder, or None when it has none (older folders)."""
    from safetensors.torch import load_file

    from .image_head import ImageHead

    directory = Path(directory).expanduser()
    config = json.loads((directory / "config.json").read_text())
    if not config.get("image_head"):
        return None
    tensors = load_file(str(directory / WEIGHTS_FILE), device="cpu")
    head = ImageHead(**config["image_head"])
    try:
        head.load_state_dict({k[len("image_head."):]: v for k, v in tensors.items() if k.startswith("image_head.")})
    except RuntimeError as exc:
        raise ModelLoadFailed(f"The DiffuGTS image head in {directory} does not match its config: "
                              f"{str(exc).splitlines()[0]}") from None
    return head.to(device).eval()
