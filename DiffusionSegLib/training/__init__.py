"""Conventions shared by every trainable part of DiffusionSeg (SDSeg, DiffuGTS heads).

- `data`: image/mask folders or image volumes + label volumes (NRRD/NIfTI/.seg.nrrd, as Slicer
  exports them) → model-ready slices, preprocessed exactly as the inference pipeline does
  (same intensity mapping, slicing and letterbox), so a model never sees a different input
  distribution at inference than in training. Plus the deterministic split.
- `budget`: `--max-minutes` shared by every stage of a run, each stage announced.
- `loop`: progress/metric events, validation Dice, EMA helpers.
- `checkpoint`: a checkpoint folder = config.json + *.safetensors + README.md model card, and a
  resumable training state (weights, optimizer moments, step) in safetensors - never pickle.
"""
