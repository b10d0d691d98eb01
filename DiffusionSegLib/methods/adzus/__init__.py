"""ADZUS (Hamrani & Godavarty 2025): zero-shot segmentation from the self-attention of a frozen
Stable Diffusion, on DiffSeg's attention merging, with the prompt choosing the foreground.

Modules: `spec` (registry metadata and parameters, torch-free), `method` (the `Adzus` class:
one slice batch from latent to proposals and their evidence), `diffseg` (aggregate, merge by
KL, NMS), `prompt_attention` (the prompt's cross-attention per pixel), `shared_proposals`
(prompt-independent proposals cached per image).
"""

from .method import Adzus

__all__ = ["Adzus"]
