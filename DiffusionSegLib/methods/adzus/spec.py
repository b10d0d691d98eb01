"""ADZUS's registry metadata and parameters, free of torch: the Slicer panel, the CLI and the
docs read them without loading a model, and every default is defined here once."""

from __future__ import annotations

from ..base import MethodInfo, Param

REFERENCE = ("Hamrani A., Godavarty A. Self-Attention Diffusion Models for Zero-Shot Biomedical Image "
             "Segmentation: Unlocking New Frontiers in Medical Imaging. arXiv:2503.18170 (2025); "
             "Bioengineering 12(10):1036 (2025), doi:10.3390/bioengineering12101036. Built on Tian et al., "
             "Diffuse, Attend, and Segment (DiffSeg), CVPR 2024.")

PARAMS = (
    Param("timestep", "int", 300, "Diffusion timestep whose attention is read (DiffSeg: 300).",
          minimum=0, maximum=999, advanced=False),
    Param("latent_mode", "choice", "ddim_inversion",
          "How the latent reaches the timestep: 'clean' = DiffSeg-exact (clean latent, t's embedding), "
          "'noise' = seeded forward noising, 'ddim_inversion' = deterministic DDIM inversion.",
          choices=("clean", "noise", "ddim_inversion")),
    Param("inversion_steps", "int", 50,
          "DDIM steps over the full 1000-step schedule; inversion stops at the timestep (50 → 15 UNet calls at t=300).",
          minimum=1, maximum=1000),
    Param("kl_threshold", "float", 1.1,
          "Symmetric-KL threshold tau for merging attention maps: larger gives fewer, bigger segments "
          "(DiffSeg: 1.1 COCO, 0.9 Cityscapes).", label="KL threshold", minimum=0.0, maximum=100.0,
          advanced=False),
    Param("merge_iterations", "int", 3, "Merging iterations N (DiffSeg: 3).", minimum=1, maximum=10),
    Param("anchors_per_side", "int", 16, "Anchor grid M×M for the first merge (DiffSeg: 16).",
          minimum=1, maximum=128),
    Param("refine_kmeans", "bool", False, "Refine merged segments with K-means (slower, smoother)."),
    Param("nms", "choice", "peak",
          "How merged maps become segments: 'peak' = each map divided by its own maximum before the per-pixel "
          "argmax (segment sizes unbiased), 'diffseg' = DiffSeg's plain argmax, which enlarges small segments.",
          label="Segment boundaries", choices=("peak", "diffseg")),
    Param("foreground", "choice", "auto",
          "Which segments are returned: 'prompt' = cross-attention voting of the prompt's tokens, "
          "'border' = all but segments on the image border, 'all' = every segment as its own label, "
          "'auto' = prompt when a prompt is given, else border.",
          choices=("auto", "prompt", "border", "all"), advanced=False),
    Param("vote_threshold", "float", 2.0,
          "A segment is a candidate when its median prompt attention is at least this multiple of the "
          "background's (the least-attended segments covering 5 % of each slice; one reference for the whole "
          "volume, so a slice or the whole volume may be empty). Tissue next to a target reaches 1.3× on the "
          "planted model.", label="Vote threshold", minimum=0.0, maximum=100.0, advanced=False),
    Param("seed_threshold", "float", 3.0,
          "Volume-level step: candidates are kept only when 3D-connected to a segment at least this multiple "
          "of the background (strong evidence); set equal to vote_threshold to keep every candidate.",
          minimum=0.0, maximum=100.0),
    Param("border_threshold", "float", 0.2,
          "Border rule: segments holding at least this fraction of the image border are background.",
          minimum=0.0, maximum=1.0),
    Param("attention_chunk", "int", 0,
          "Query tokens per softmax chunk in the attention pass, to bound GPU memory at large images "
          "or batches (0 = all at once; the result is the same).", minimum=0, maximum=1_000_000),
    Param("proposals", "choice", "prompt",
          "'prompt': inversion and self-attention see the prompt's text context (the proposals change with "
          "the prompt); 'shared': they see the empty context (DiffSeg), so the proposals are computed once per "
          "image and reused for every prompt (one cross-attention pass per prompt). See methods/adzus/shared_proposals.py.",
          choices=("prompt", "shared")),
    Param("prompt_template", "str", "{prompt}",
          "Text context around the prompt, e.g. 'a microscopy image of a {prompt}'."),
)


INFO = MethodInfo(
    name="adzus",
    label="ADZUS",
    description="Zero-shot: merges Stable Diffusion self-attention into segments (DiffSeg) and keeps "
                "those the prompt attends to. No training.",
    prompt="optional",
    needs_checkpoint=False,
    default_model="CompVis/stable-diffusion-v1-4",
    params=PARAMS,
    prompt_examples=("white blood cell", "skin lesion", "lung infection"),
    reference=REFERENCE,
)
