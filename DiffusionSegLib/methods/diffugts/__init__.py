"""DiffuGTS (Jiang et al., CVPR 2025) re-implemented on a frozen text-conditioned 2D latent
diffusion model (diffusers, Stable Diffusion layout), slice by slice.

Modules, one stage each: prompts (paired anomaly/normal prompts), features (frozen UNet decoder
features), aova (anomaly-aware attention maps, coarse mask), inpaint (pseudo-healthy latent
inpainting), residual (pixel/feature residuals, Otsu), heads (optional trained adapter and
residual head), pipeline (the stages together), train (`train diffugts`).
"""

from .method import DiffuGTS

__all__ = ["DiffuGTS"]
