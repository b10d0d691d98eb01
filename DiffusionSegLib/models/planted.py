"""The planted model (`--model planted`): a stand-in for Stable Diffusion with a known right answer.

A TEST MODEL. It knows nothing about anatomy: its attention is planted from the image's intensity
so that the real pipeline — attention capture, DiffSeg's merge, the prompt's attention, the
decision, the 3D step, post-processing, DiffuGTS's inpainting and residuals, the evidence
bundle — runs at the shipped default thresholds and has one right answer:

    after the request's intensity mapping, pixels whose normalised intensity is >= 0.75
    (`TARGET_LEVEL`) are what any prompt names — except the words "healthy" and "normal",
    which name the body (normalised intensity > `BODY_LEVEL`), as a DiffuGTS normal prompt does.

How each part plays its role, with the real diffusers interfaces the methods use:

- VAE (`PlantedAutoencoder`, an `AutoencoderKL`): the latent of an image is its grey level on a
  grid 4x coarser, `GAIN * (I - 0.5)` in channels 0-2 and the constant `GAIN` in channel 3; the
  constant lets the UNet read the grey level back whatever scale noising or inversion gave the
  latent. Decoding is the inverse (bilinear). The real encoder blocks run too, so hooks on them
  (DiffuGTS's adapter features) see real modules.
- Text encoder: a real `CLIPTextModel` whose weights make every output token one of three
  directions: a content word, a "normal" word (`healthy`, `normal`) or a special token.
- UNet (`PlantedUNet`): SD v1's block layout with the same attention modules at the same names
  (`down_blocks.0.attentions.0.transformer_blocks.0.attn1` …), so `capture_attention` installs its
  processors exactly as on Stable Diffusion. Its tokens carry the grey level; self-attention
  logits are `SELF_SHARPNESS * cos(θ_i − θ_j)` with θ = π/2 · I (pixels attend to pixels of
  similar intensity, so DiffSeg's merge yields the intensity regions); cross-attention logits
  are `TARGET_LOGIT` for content words on target pixels, `BODY_LOGIT` for normal words on the
  body (I > `BODY_LEVEL`) and 0 otherwise. Its noise prediction says the clean latent is the
  input itself (so DDIM inversion only rescales it) — except under a normal prompt, where the
  clean latent is the healthy image: target pixels filled with the surrounding body's level.
  So DiffuGTS repaints a lesion as body and its residual is the lesion.

Attention layers run only when a processor that reads them is installed: the planted output
does not depend on them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ConfigMixin, DDIMScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
)
from diffusers.models.autoencoders.vae import (
    DecoderOutput,
    DiagonalGaussianDistribution,
)
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from torch import nn

from .architectures import architecture, save_tiny_tokenizer

TARGET_LEVEL = 0.75      # normalised intensity at and above which a pixel is what every prompt names
BODY_LEVEL = 0.05        # above this a pixel is body (the volume pipeline's tissue level)
GAIN = 6.0               # latent units per unit of grey level
SELF_SHARPNESS = 40.0    # self-attention logit scale
TARGET_AFFINITY = 30.0   # extra self-attention logit between two target pixels: the target segment ends at the target
TARGET_LOGIT = 8.0       # cross-attention logit of a content word on a target pixel
BODY_LOGIT = 4.0         # cross-attention logit of a normal word on a body pixel
STEP_WIDTH = 0.01        # width of the smooth step at TARGET_LEVEL (grey levels)
FILL_SIGMA = 0.15        # Gaussian width of the healthy fill, as a fraction of the latent side
DEFAULT_IMAGE_SIZE = 512
VAE_FACTOR = 8
TOKEN_DIM = 8            # planted token features: cos θ, sin θ, target, body, 4 spare
TEXT_DIM = 32
NORMAL_WORDS = ("healthy", "normal")
WORDS = ("white blood cell red nucleus cytoplasm skin lesion tumour tumor cancer mass nodule liver kidney brain "
         "lung infection chest x-ray ct mri microscopy dermoscopy image photo scan slice of a an the in with and "
         "healthy normal abnormal organ region background bright spot vessel bone").split()
# SD v1's layout: (block list, index, resolution divisor, number of transformer blocks)
LAYOUT = (("down_blocks", 0, 1, 2), ("down_blocks", 1, 2, 2), ("down_blocks", 2, 4, 2), ("down_blocks", 3, 8, 0),
          ("mid_block", None, 8, 1),
          ("up_blocks", 0, 8, 0), ("up_blocks", 1, 4, 3), ("up_blocks", 2, 2, 3), ("up_blocks", 3, 1, 3))


def image_size_of(reference: str) -> int:
    """`planted` → 256 px; `planted:<size>` for another canvas (a multiple of 32)."""
    _, _, size = reference.partition(":")
    side = int(size) if size.isdigit() else DEFAULT_IMAGE_SIZE
    if not size.isdigit() and size:
        raise ValueError(f"planted model sizes are written planted:<pixels>; got {reference!r}")
    if side % (VAE_FACTOR * 8) or not 64 <= side <= 1024:
        raise ValueError(f"the planted model's image size must be a multiple of {VAE_FACTOR * 8} from 64 to 1024")
    return side


# -- the three roles a text token can have ---------------------------------------------------------

def _role_vectors() -> torch.Tensor:
    """(3, TEXT_DIM) token embeddings for content, normal, special: zero mean and equal norm, so
    CLIP's final LayerNorm only rescales them."""
    roles = torch.zeros(3, TEXT_DIM)
    for role in range(3):
        roles[role, 2 * role], roles[role, 2 * role + 1] = 1.0, -1.0
    return roles


def build_text_encoder(tokenizer: Any) -> nn.Module:
    """A real CLIPTextModel whose output for each token is its role's direction."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=TEXT_DIM,
                            num_hidden_layers=1, num_attention_heads=1, max_position_embeddings=77,
                            projection_dim=TEXT_DIM, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = CLIPTextModel(config).eval()
    roles = _role_vectors()
    normal_ids = {i for word in NORMAL_WORDS for i in tokenizer(word, add_special_tokens=False).input_ids}
    special_ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    with torch.no_grad():
        table = roles[0].repeat(len(tokenizer), 1)
        for i in normal_ids:
            table[i] = roles[1]
        for i in special_ids:
            table[i] = roles[2]
        text = getattr(model, "text_model", model)   # transformers 4 wraps the modules in .text_model
        embeddings = text.embeddings
        embeddings.token_embedding.weight.copy_(table)
        embeddings.position_embedding.weight.zero_()
        for layer in text.encoder.layers:   # every layer adds nothing: residual identity
            layer.self_attn.out_proj.weight.zero_()
            layer.self_attn.out_proj.bias.zero_()
            layer.mlp.fc2.weight.zero_()
            layer.mlp.fc2.bias.zero_()
        text.final_layer_norm.weight.fill_(1.0)
        text.final_layer_norm.bias.zero_()
    return model


def role_directions() -> torch.Tensor:
    """(3, TEXT_DIM): what the text encoder outputs for each role (LayerNorm of the embedding)."""
    return F.layer_norm(_role_vectors(), (TEXT_DIM,))


# -- the VAE ------------------------------------------------------------------------------------------

def grey_to_latent(grey: torch.Tensor) -> torch.Tensor:
    """(B, h, w) grey level in [0, 1] → (B, 4, h, w) planted latent."""
    signal = GAIN * (grey - 0.5)
    return torch.stack([signal, signal, signal, torch.full_like(grey, GAIN)], dim=1)


def latent_to_grey(latent: torch.Tensor) -> torch.Tensor:
    """The grey level a latent holds, read against its own reference channel: the same for a
    clean latent, one DDIM inversion rescaled and one noised by q(z_t | z_0) (up to the noise)."""
    latent = latent.float()
    scale = latent[:, 3].mean(dim=(1, 2)).clamp_min(1e-3)[:, None, None]
    return 0.5 + latent[:, :3].mean(dim=1) / scale


class PlantedAutoencoderKL(AutoencoderKL):
    """The VAE of the planted model (see the module doc): real encoder blocks, planted latents."""

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        self.encoder(x)   # the real blocks run, for hooks that read them; their output is not used
        grey = F.avg_pool2d(((x.float() + 1.0) / 2.0).mean(dim=1, keepdim=True), VAE_FACTOR)[:, 0]
        mean = grey_to_latent(grey.clamp(0.0, 1.0))
        moments = torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)   # log-variance: deterministic
        posterior = DiagonalGaussianDistribution(moments.to(x.dtype))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, **kwargs: Any) -> Any:
        grey = F.interpolate(latent_to_grey(z)[:, None], scale_factor=VAE_FACTOR, mode="bilinear",
                             align_corners=False).clamp(0.0, 1.0)
        sample = (grey * 2.0 - 1.0).expand(-1, 3, -1, -1).to(z.dtype)
        return DecoderOutput(sample=sample) if return_dict else (sample,)


def build_vae(image_size: int) -> PlantedAutoencoderKL:
    return PlantedAutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=image_size,
        block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        scaling_factor=1.0).eval()


# -- the UNet ---------------------------------------------------------------------------------------

def _reads(attention: Attention) -> bool:
    """Whether a processor that reads attention is installed (anything but diffusers' defaults)."""
    return not isinstance(attention.processor, (AttnProcessor, AttnProcessor2_0))


class PlantedTransformerBlock(nn.Module):
    """Where SD has a BasicTransformerBlock: its self- (attn1) and cross-attention (attn2)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn1 = Attention(TOKEN_DIM, heads=1, dim_head=TOKEN_DIM)
        self.attn2 = Attention(TOKEN_DIM, cross_attention_dim=TEXT_DIM, heads=1, dim_head=TOKEN_DIM)


class PlantedTransformer(nn.Module):
    """Where SD has a Transformer2DModel."""

    def __init__(self) -> None:
        super().__init__()
        self.transformer_blocks = nn.ModuleList([PlantedTransformerBlock()])


class PlantedBlock(nn.Module):
    """One down, mid or up block: runs its attention layers on the planted tokens and returns the
    planted feature map at its resolution (what hooks on `up_blocks[i]` read)."""

    def __init__(self, divisor: int, transformers: int) -> None:
        super().__init__()
        self.divisor = divisor
        self.attentions = nn.ModuleList([PlantedTransformer() for _ in range(transformers)])

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        for transformer in self.attentions:
            block = transformer.transformer_blocks[0]
            if _reads(block.attn1):
                block.attn1(tokens)
            if _reads(block.attn2):
                block.attn2(tokens, encoder_hidden_states=context)
        return features


class PlantedUNet(ModelMixin, ConfigMixin):
    """The planted denoiser (see the module doc): SD v1's attention layout, planted attention, and
    a noise prediction that keeps the image, or makes it healthy under a normal prompt."""

    @register_to_config
    def __init__(self, sample_size: int = 64, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                 beta_end: float = 0.012, beta_schedule: str = "scaled_linear") -> None:
        super().__init__()
        blocks: dict[str, list[PlantedBlock]] = {"down_blocks": [], "up_blocks": [], "mid_block": []}
        for kind, _, divisor, transformers in LAYOUT:
            blocks[kind].append(PlantedBlock(divisor, transformers))
        self.down_blocks = nn.ModuleList(blocks["down_blocks"])
        self.mid_block = blocks["mid_block"][0]
        self.up_blocks = nn.ModuleList(blocks["up_blocks"])
        schedule = DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_start=beta_start,
                                 beta_end=beta_end, beta_schedule=beta_schedule)
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.clone().float(), persistent=False)
        self.register_buffer("roles", role_directions(), persistent=False)
        self._plant_weights()

    @torch.no_grad()
    def _plant_weights(self) -> None:
        for module in self.modules():
            if not isinstance(module, PlantedTransformerBlock):
                continue
            self_attention, cross = module.attn1, module.attn2
            root = math.sqrt(SELF_SHARPNESS / self_attention.scale)
            for layer in (self_attention.to_q, self_attention.to_k):
                # scale·q·k = SELF_SHARPNESS·cos(θi − θj) + TARGET_AFFINITY·target_i·target_j
                layer.weight.zero_()
                layer.weight[0, 0] = layer.weight[1, 1] = root
                layer.weight[2, 2] = math.sqrt(TARGET_AFFINITY / self_attention.scale)
            cross.to_q.weight.zero_()
            cross.to_q.weight[0, 2] = TARGET_LOGIT / math.sqrt(cross.scale)     # content words ← target
            cross.to_q.weight[1, 3] = BODY_LOGIT / math.sqrt(cross.scale)       # normal words ← body
            cross.to_k.weight.zero_()
            for row, role in ((0, 0), (1, 1)):
                direction = self.roles[role]
                cross.to_k.weight[row] = direction / direction.dot(direction) / math.sqrt(cross.scale)
            for attention in (self_attention, cross):
                attention.to_v.weight.copy_(torch.eye(TOKEN_DIM, attention.to_v.weight.shape[1]))
                attention.to_out[0].weight.zero_()
                attention.to_out[0].bias.zero_()

    # the grey level and what the tokens carry ----------------------------------------------------
    def _maps(self, grey: torch.Tensor, divisor: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, r², TOKEN_DIM), features (B, 3, r, r)) at the latent side / divisor."""
        target = torch.sigmoid((grey - TARGET_LEVEL) / STEP_WIDTH)
        body = torch.sigmoid((grey - BODY_LEVEL) / STEP_WIDTH)
        stack = torch.stack([grey.clamp(0.0, 1.0), target, body], dim=1)
        if divisor > 1:
            stack = F.avg_pool2d(stack, divisor)
        angle = stack[:, 0] * (math.pi / 2)
        channels = [torch.cos(angle), torch.sin(angle), stack[:, 1], stack[:, 2]]
        tokens = torch.stack(channels + [torch.zeros_like(angle)] * (TOKEN_DIM - len(channels)), dim=-1)
        return tokens.flatten(1, 2), stack

    def _has_normal_word(self, context: torch.Tensor) -> torch.Tensor:
        """(B,) True where the text context holds a normal word ("healthy …")."""
        direction = self.roles[1].to(context)
        return ((context.float() @ direction.float()) / direction.float().dot(direction.float()) > 0.5).any(dim=1)

    @staticmethod
    def healthy(grey: torch.Tensor) -> torch.Tensor:
        """The grey level with the body replaced by its surrounding body level: a Gaussian-weighted
        mean over body pixels that are not target (normalised convolution), so a lesion and the
        tissue around it become the tissue's level, and air stays air."""
        target = torch.sigmoid((grey - TARGET_LEVEL) / STEP_WIDTH)
        body = torch.sigmoid((grey - BODY_LEVEL) / STEP_WIDTH)
        weight = body * (1.0 - target)
        sigma = max(1.0, FILL_SIGMA * grey.shape[-1])
        radius = int(3 * sigma)
        x = torch.arange(-radius, radius + 1, dtype=grey.dtype, device=grey.device)
        kernel = torch.exp(-0.5 * (x / sigma) ** 2)
        kernel = kernel / kernel.sum()

        def blur(values: torch.Tensor) -> torch.Tensor:
            values = F.conv2d(F.pad(values[:, None], (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
            return F.conv2d(F.pad(values, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))[:, 0]

        level = blur(grey * weight) / blur(weight).clamp_min(1e-4)
        return torch.where(body > 0.5, level, grey)

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                return_dict: bool = True, **kwargs: Any) -> Any:
        grey = latent_to_grey(sample)
        context = encoder_hidden_states.to(torch.float32)
        maps = {divisor: self._maps(grey, divisor) for divisor in sorted({entry[2] for entry in LAYOUT})}
        for kind, index, divisor, _ in LAYOUT:
            block = self.mid_block if index is None else getattr(self, kind)[index]
            tokens, features = maps[divisor]
            block(tokens.to(self.dtype), context.to(self.dtype), features)
        t = torch.as_tensor(timestep, device=sample.device).flatten().long()
        alpha = self.alphas_cumprod.to(sample.device)[t].float()
        alpha = alpha.expand(sample.shape[0])[:, None, None, None]
        clean = sample.float() / alpha.sqrt()   # the image itself: the noise prediction is 0
        normal = self._has_normal_word(context)
        if bool(normal.any()):   # a normal prompt: the clean image is the healthy one
            clean[normal] = grey_to_latent(self.healthy(grey[normal]))
        epsilon = (sample.float() - alpha.sqrt() * clean) / (1.0 - alpha).clamp_min(1e-6).sqrt()
        epsilon = epsilon.to(sample.dtype)
        return UNet2DConditionOutput(sample=epsilon) if return_dict else (epsilon,)


def build_planted(reference: str, with_text_encoder: bool = True) -> dict[str, Any]:
    """unet, vae, text_encoder (when asked for), tokenizer and scheduler of `planted[:<size>]`."""
    import tempfile

    from transformers import CLIPTokenizer

    side = image_size_of(reference)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(save_tiny_tokenizer(folder, tuple(WORDS)))
    schedule = architecture("tiny-sd")["scheduler"]
    built: dict[str, Any] = {
        "unet": PlantedUNet(sample_size=side // VAE_FACTOR, num_train_timesteps=schedule["num_train_timesteps"],
                            beta_start=schedule["beta_start"], beta_end=schedule["beta_end"],
                            beta_schedule=schedule["beta_schedule"]).eval(),
        "vae": build_vae(side), "tokenizer": tokenizer, "scheduler": DDIMScheduler(**schedule),
    }
    if with_text_encoder:
        built["text_encoder"] = build_text_encoder(tokenizer)
    return built


def planted_truth(array: Any, is_rgb: bool, preset: str = "auto") -> Any:
    """The planted model's right answer for an image: where its normalised intensity (the grey
    level of the request's intensity mapping) is at least TARGET_LEVEL. `array` is a volume's
    (K, J, I[, 3]) array as `read_volume` gives it; returns a bool array (K, J, I)."""
    import numpy as np

    from ..imaging.intensity import choose_mapping

    mapping = choose_mapping(array, is_rgb, preset)
    scale = max(mapping.high - mapping.low, 1e-6)   # as IntensityMapping.apply, without its RGB copy
    grey = np.clip((np.asarray(array, dtype=np.float32) - mapping.low) / scale, 0.0, 1.0)
    if is_rgb:
        grey = grey.mean(axis=-1)
    return grey >= TARGET_LEVEL
