"""DiffuGTS's registry metadata and parameter parsing, free of torch.

Both the method (`method.py`) and the trainer (`train.py`) read these, so
neither imports the other (no import circle), and the Slicer panel reads them without torch.
"""

from __future__ import annotations

from ...contract.errors import InvalidParameter
from ..base import MethodInfo, Param


def parse_timesteps(text: str) -> tuple[int, ...]:
    """'100' or '100, 300' → (100, 300); each in [1, 999]."""
    try:
        values = tuple(int(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 1 <= v <= 999 for v in values):
        raise InvalidParameter(f"Parameter 'aova_timesteps' must be comma-separated integers in [1, 999]; "
                               f"got {text!r}.")
    return values


def param(name: str) -> Param:
    """The parameter `name` of DiffuGTS (the trainer checks its flags against these ranges)."""
    return INFO.param(name)


INFO = MethodInfo(
    name="diffugts",
    label="DiffuGTS",
    description="Tumour segmentation from a text prompt: anomaly-aware attention maps of a frozen "
                "text-to-image diffusion model, pseudo-healthy inpainting, and residuals.",
    prompt="required",
    needs_checkpoint=False,
    default_model="CompVis/stable-diffusion-v1-4",
    trainable=True,
    prompt_examples=("liver tumour", "brain tumour", "kidney tumour", "lung tumour"),
    reference="Jiang et al., Generalizable Tumor Segmentation with Anomaly-Aware Open-Vocabulary "
              "Attention Maps and Frozen Foundation Diffusion Models, CVPR 2025 (re-implemented "
              "slice-wise on a 2D Stable-Diffusion-layout model; no official code exists).",
    params=(
        Param("organ", "str", "", "Organ the tumour lies in; the normal prompt becomes 'healthy <organ>' "
                        "(empty: taken from the prompt, 'brain tumour' → 'healthy brain').", label="Organ",
              advanced=False),
        Param("normal_prompt", "str", "", "Explicit normal (healthy) prompt; overrides 'organ'.",
              label="Normal prompt", advanced=False),
        Param("heads", "str", "", "Folder of trained DiffuGTS heads (`train diffugts`); empty: "
              "training-free attention maps and Otsu.", label="Trained heads", advanced=False),
        Param("strength", "float", 0.6, "Noise strength of the pseudo-healthy inpainting "
              "(fraction of the schedule re-generated).", minimum=0.05, maximum=1.0),
        Param("steps", "int", 20, "Inference steps of the full schedule (about steps × strength "
              "UNet calls per slice).", minimum=1, maximum=200),
        Param("guidance_scale", "float", 7.5, "Classifier-free guidance of the repaint: towards the normal prompt "
              "and away from the anomaly prompt (Stable Diffusion img2img's default 7.5; 1 = the normal prompt "
              "alone, half the UNet calls).", label="Guidance scale", minimum=1.0, maximum=30.0),
        Param("dilation", "int", 3, "Dilation of the coarse mask before inpainting, in pixels of the "
              "model grid.", minimum=0, maximum=64),
        Param("beta1", "float", 0.5, "Weight of the pixel residual |I - H|.", minimum=0.0, maximum=1.0),
        Param("beta2", "float", 0.5, "Weight of the feature residual (UNet feature cosine distance).",
              minimum=0.0, maximum=1.0),
        Param("threshold_method", "choice", "auto", "Coarse-mask threshold: Otsu, or a fixed level; "
              "auto = Otsu on the attention map, fixed 0.5 on a trained adapter's probability.",
              choices=("auto", "otsu", "fixed")),
        Param("threshold", "float", 0.5, "Level for threshold_method=fixed (anomaly difference, or the "
              "adapter's probability).", minimum=0.0, maximum=100.0),
        Param("anomaly_floor", "float", 0.5, "Absolute floor of the anomaly difference (anomaly minus normal "
              "prompt attention, in units of each prompt's mean attention inside the body): no pixel below it "
              "is abnormal, and a found region must average at least this much. With trained heads the "
              "adapter's probability 0.5 is the floor.", minimum=0.0, maximum=100.0, advanced=False),
        Param("anomaly_seed", "float", 1.0, "Volume-level step: regions are kept only when 3D-connected to one "
              "averaging at least this anomaly difference (strong evidence).", minimum=0.0, maximum=100.0),
        Param("gate_threshold", "float", 4.0, "Image-level anomaly gate: only a slice whose singled-out region "
              "stands this many robust standard deviations above the rest of its body (pure noise: about 2) can "
              "seed a finding; its neighbours' regions connected to it are kept. 0 = no gate. A trained "
              "image-level head is gated at probability 0.5.", minimum=0.0, maximum=100.0),
        Param("aova_timesteps", "str", "100", "Diffusion timesteps (comma-separated) whose "
              "cross-attention is averaged; the first also gives the UNet features."),
        Param("body_level", "float", 0.05, "Normalised intensity above which a pixel is body/organ; "
              "masks stay inside that region.", minimum=0.0, maximum=1.0),
    ),
)
