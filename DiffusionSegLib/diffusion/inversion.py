"""Bringing a clean latent z0 to diffusion timestep t before the attention pass.

ADZUS names "latent-space inversion" without details, so the choice is a parameter:

- "clean": z0 itself with t's embedding — exactly what DiffSeg does (no noise at t = 300).
- "noise": one draw of the forward process q(z_t | z0) = N(√ᾱ_t z0, (1 − ᾱ_t) I), seeded.
- "ddim_inversion": deterministic DDIM inversion (guidance 1, the text context of the attention
  pass) from z0 up to t; the most literal reading of "latent-space inversion" and our default.

The DDIM updates are written out rather than taken from `DDIMInverseScheduler` so that the
schedule is explicit and testable: with `inversion_steps` = n over the model's T training steps
the step is T // n, the UNet is called at timesteps 0, step, 2·step, … and the last step lands
exactly on t. `ddim_sample` is the matching reverse walk; with an ε-model that does not depend
on its input the two are exact inverses, which tests the plumbing without weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch

LATENT_MODES = ("clean", "noise", "ddim_inversion")
EpsilonModel = Callable[["torch.Tensor", int], "torch.Tensor"]
StepCallback = Callable[[int, int], None]


def inversion_timesteps(timestep: int, inversion_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Levels 0 = t_0 < t_1 < … < t_k = timestep visited by the inversion.

    The grid is that of an `inversion_steps`-step sampler over the full training range
    (step = T // n: 20 for 50 steps of 1000), cut at `timestep`; a final shorter step is added
    when `timestep` is not on the grid. t = 300 with 50 steps gives 15 steps.
    """
    if not 0 <= timestep < num_train_timesteps:
        raise ValueError(f"timestep must lie in [0, {num_train_timesteps - 1}], got {timestep}")
    if inversion_steps < 1:
        raise ValueError("inversion_steps must be at least 1")
    step = max(1, num_train_timesteps // inversion_steps)
    levels = list(range(0, timestep + 1, step))
    if levels[-1] != timestep:
        levels.append(timestep)
    return levels


def _alpha(alphas_cumprod: "torch.Tensor", level_index: int, level: int, clean_alpha: float) -> float:
    """ᾱ of a level; the first level (0) is the clean latent at the scheduler's final ᾱ."""
    return clean_alpha if level_index == 0 else float(alphas_cumprod[level])


def _ddim_move(latents: "torch.Tensor", epsilon: "torch.Tensor", alpha_from: float,
               alpha_to: float) -> "torch.Tensor":
    """One deterministic DDIM transition between noise levels with a fixed ε (η = 0)."""
    predicted_clean = (latents - (1.0 - alpha_from) ** 0.5 * epsilon) / alpha_from ** 0.5
    return alpha_to ** 0.5 * predicted_clean + (1.0 - alpha_to) ** 0.5 * epsilon


def ddim_invert(epsilon_model: EpsilonModel, clean: "torch.Tensor", levels: list[int],
                alphas_cumprod: "torch.Tensor", clean_alpha: float,
                on_step: StepCallback | None = None) -> "torch.Tensor":
    """DDIM inversion z0 → z_t along `levels` (see `inversion_timesteps`).

    Each step evaluates ε at the current, less noisy latent and timestep and moves to the next
    level with it. `on_step(done, total)` runs after every UNet call (progress and
    cancellation live there).
    """
    latents = clean
    total = len(levels) - 1
    for index in range(total):
        epsilon = epsilon_model(latents, levels[index])
        alpha_from = _alpha(alphas_cumprod, index, levels[index], clean_alpha)
        alpha_to = _alpha(alphas_cumprod, index + 1, levels[index + 1], clean_alpha)
        latents = _ddim_move(latents, epsilon.to(latents.dtype), alpha_from, alpha_to)
        if on_step is not None:
            on_step(index + 1, total)
    return latents


def ddim_sample(epsilon_model: EpsilonModel, noisy: "torch.Tensor", levels: list[int],
                alphas_cumprod: "torch.Tensor", clean_alpha: float,
                on_step: StepCallback | None = None) -> "torch.Tensor":
    """Deterministic DDIM sampling z_t → z0 down the same `levels` (the reverse of `ddim_invert`)."""
    latents = noisy
    total = len(levels) - 1
    for done, index in enumerate(range(total, 0, -1), start=1):
        epsilon = epsilon_model(latents, levels[index])
        alpha_from = _alpha(alphas_cumprod, index, levels[index], clean_alpha)
        alpha_to = _alpha(alphas_cumprod, index - 1, levels[index - 1], clean_alpha)
        latents = _ddim_move(latents, epsilon.to(latents.dtype), alpha_from, alpha_to)
        if on_step is not None:
            on_step(done, total)
    return latents


def forward_noise(clean: "torch.Tensor", timestep: int, alphas_cumprod: "torch.Tensor",
                  seed: int) -> "torch.Tensor":
    """A seeded draw of q(z_t | z0). One noise field, drawn on the CPU from the seed, is shared by
    every image of the batch: a slice's latent then depends on the seed alone (not on the batch
    size or its place in the batch, not on the device), and neighbouring slices of a volume get
    the same perturbation."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    field = torch.randn((1, *clean.shape[1:]), generator=generator, dtype=torch.float32)
    noise = field.to(clean.device, clean.dtype).expand_as(clean)
    alpha = float(alphas_cumprod[timestep])
    return alpha ** 0.5 * clean + (1.0 - alpha) ** 0.5 * noise


def unet_epsilon(unet: Any, context: "torch.Tensor", alphas_cumprod: "torch.Tensor",
                 prediction_type: str = "epsilon") -> EpsilonModel:
    """ε-prediction of a diffusers UNet with a fixed text context (no classifier-free guidance).

    v-prediction models (SD 2.x at 768 px) are converted with ε = √ᾱ·v + √(1−ᾱ)·x so that the
    DDIM updates above hold for them too.
    """
    import torch

    def epsilon(latents: torch.Tensor, timestep: int) -> torch.Tensor:
        batch_context = context if context.shape[0] == latents.shape[0] else \
            context.expand(latents.shape[0], *context.shape[1:])
        t = torch.tensor(timestep, device=latents.device)
        output = unet(latents.to(unet.dtype), t, encoder_hidden_states=batch_context).sample.float()
        alpha = float(alphas_cumprod[timestep])
        if prediction_type == "epsilon":
            return output
        if prediction_type == "v_prediction":
            return alpha ** 0.5 * output + (1.0 - alpha) ** 0.5 * latents.float()
        if prediction_type == "sample":
            return (latents.float() - alpha ** 0.5 * output) / (1.0 - alpha) ** 0.5
        raise ValueError(f"unsupported prediction type {prediction_type!r}")

    return epsilon


def clean_alpha_of(scheduler: Any) -> float:
    """ᾱ of the clean end: 1 when the scheduler sets `set_alpha_to_one`, else ᾱ_0 (SD v1's DDIM
    configuration), so inversion starts where the model's own sampler ends."""
    if getattr(scheduler.config, "set_alpha_to_one", False):
        return 1.0
    return float(scheduler.alphas_cumprod[0])


def reach_timestep(mode: str, clean: "torch.Tensor", timestep: int, *, unet: Any, scheduler: Any,
                   context: "torch.Tensor", inversion_steps: int = 50, seed: int = 0,
                   on_step: StepCallback | None = None) -> "torch.Tensor":
    """The latent that the attention pass sees at `timestep`, by one of `LATENT_MODES`."""
    import torch

    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    if mode == "clean":
        return clean
    if mode == "noise":
        return forward_noise(clean, timestep, alphas_cumprod, seed)
    if mode == "ddim_inversion":
        levels = inversion_timesteps(timestep, inversion_steps, scheduler.config.num_train_timesteps)
        epsilon = unet_epsilon(unet, context, alphas_cumprod,
                               getattr(scheduler.config, "prediction_type", "epsilon"))
        inverted = ddim_invert(epsilon, clean.float(), levels, alphas_cumprod, clean_alpha_of(scheduler),
                               on_step=on_step)
        return inverted.to(clean.dtype)
    raise ValueError(f"unknown latent mode {mode!r}; use one of {', '.join(LATENT_MODES)}")
