"""The volume pipeline shared by every method: a loaded method over a whole volume (segmenter:
slices → normalise → letterbox → batches → method → back onto the input grid → the volume-level
decision → 3D post-processing), the evidence maps streamed onto the input grid (evidence), and
several prompts in one job (several_prompts).
"""
