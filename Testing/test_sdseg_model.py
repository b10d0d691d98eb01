"""SDSeg model invariants: zero-init widening, scale factor, conditioner init, checkpoints."""

import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
from sdseg_synthetic import disc_pairs

from DiffusionSegLib.contract.errors import ModelLoadFailed, ModelNotFound
from DiffusionSegLib.methods.sdseg.build import (
    build_from_pretrained,
    build_from_scratch,
    conditioner_from_vae,
    small_unet_config,
    small_vae_config,
    widen_conv_in,
)
from DiffusionSegLib.methods.sdseg.checkpoint import (
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from DiffusionSegLib.methods.sdseg.predict import (
    labels_from_probabilities,
    predict_probabilities,
)
from DiffusionSegLib.methods.sdseg.vae_training import as_rgb_mask


def tiny_vae(size=32, seed=0):
    torch.manual_seed(seed)
    return AutoencoderKL(**small_vae_config(size, (8, 16, 16), 4)).eval()


def tiny_model(num_classes=0, seed=0):
    vae = tiny_vae()
    return build_from_scratch(vae, small_unet_config(8, 4, (16, 32), 1, 0.0, num_classes), 0.0, seed=seed).eval()


def save_tiny_checkpoint(folder):
    """A random tiny SDSeg checkpoint (32 px) written by the backend's own writer; returns the folder."""
    from sdseg_synthetic import disc_pairs

    from DiffusionSegLib.methods.sdseg.checkpoint import save_checkpoint
    from DiffusionSegLib.methods.sdseg.vae_training import as_rgb_mask

    model = tiny_model()
    _, masks = disc_pairs(4)
    model.set_scale_factor_from(as_rgb_mask(masks))
    save_checkpoint(model, folder, {"kind": "sdseg", "image_size": 32, "num_classes": 0})
    return folder


def test_widened_unet_ignores_the_condition_and_matches_the_original():
    torch.manual_seed(0)
    unet = UNet2DModel(**{**small_unet_config(8, 4, (16, 32), 1, 0.0), "in_channels": 4}).eval()
    z_t, t = torch.randn(2, 4, 8, 8), torch.tensor([999, 10])
    with torch.no_grad():
        before = unet(z_t, t).sample
        widen_conv_in(unet, 4)
        assert unet.config.in_channels == 8 and unet.conv_in.in_channels == 8
        for cond in (torch.zeros(2, 4, 8, 8), torch.randn(2, 4, 8, 8) * 10):
            after = unet(torch.cat([z_t, cond], 1), t).sample
            torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_scale_factor_gives_unit_std_latents():
    model = tiny_model()
    _, masks = disc_pairs(8)
    rgb = as_rgb_mask(masks)
    factor = model.set_scale_factor_from(rgb)
    assert factor == pytest.approx(float(model.scale_factor))
    torch.manual_seed(0)
    z = model.encode_mask_unscaled(rgb) * model.scale_factor
    assert z.std().item() == pytest.approx(1.0, abs=0.05)


def test_conditioner_starts_as_the_vae_encoder():
    vae = tiny_vae()
    conditioner = conditioner_from_vae(vae, dropout=0.2).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(conditioner.encoder(x), vae.encoder(x))
        assert conditioner(x).shape == (2, 4, 8, 8)
    dropouts = [m.dropout.p for m in conditioner.modules() if type(m).__name__ == "ResnetBlock2D"]
    assert dropouts and all(p == 0.2 for p in dropouts)
    # the conditioner is trained, the VAE is not
    model = build_from_scratch(vae, small_unet_config(8, 4, (16, 32), 1, 0.2), 0.2)
    assert not any(p.requires_grad for p in model.vae.parameters())
    assert all(p.requires_grad for p in model.conditioner.parameters())
    model.train()
    assert not model.vae.training


def test_loss_terms_and_lambda_zero():
    model = tiny_model().train()
    images, masks = disc_pairs(4)
    model.set_scale_factor_from(as_rgb_mask(masks))
    g = torch.Generator().manual_seed(0)
    out = model.latent_loss(images * 2 - 1, as_rgb_mask(masks), 1.0, generator=g)
    assert out.latent.item() > 0 and out.total.item() == pytest.approx(out.noise.item() + out.latent.item(), rel=1e-5)
    out0 = model.latent_loss(images * 2 - 1, as_rgb_mask(masks), 0.0, generator=torch.Generator().manual_seed(0))
    assert out0.total.item() == pytest.approx(out0.noise.item())
    out.total.backward()
    assert model.unet.conv_in.weight.grad is not None and model.conditioner.project.weight.grad is not None


def test_inference_shapes_single_step_ddim_and_classes():
    images, _ = disc_pairs(2)
    model = tiny_model()
    for steps in (1, 3):
        p = predict_probabilities(model, images, 0, steps, torch.Generator().manual_seed(0))
        assert p.shape == (2, 1, 32, 32) and 0 <= p.min() and p.max() <= 1
    # same seed → same x_T → same answer; the sampler is deterministic given the seed
    a = predict_probabilities(model, images, 0, 1, torch.Generator().manual_seed(5))
    b = predict_probabilities(model, images, 0, 1, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    multi = tiny_model(num_classes=2)
    p = predict_probabilities(multi, images, 2, 1, torch.Generator().manual_seed(0))
    assert p.shape == (2, 2, 32, 32)
    labels = labels_from_probabilities(torch.tensor([[[[0.2]], [[0.7]]], [[[0.9]], [[0.6]]], [[[0.1]], [[0.3]]]]))
    assert labels.flatten().tolist() == [2, 1, 0]


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model()
    _, masks = disc_pairs(4)
    model.set_scale_factor_from(as_rgb_mask(masks))
    save_checkpoint(model, tmp_path / "ckpt", {"kind": "sdseg", "image_size": 32, "num_classes": 0})
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {"config.json", "vae", "unet", "conditioner.safetensors"}
    assert not list((tmp_path / "ckpt").rglob("*.bin")) and not list((tmp_path / "ckpt").rglob("*.pt"))
    loaded, config = load_checkpoint(tmp_path / "ckpt")
    assert config["image_size"] == 32 and config["scale_factor"] == pytest.approx(float(model.scale_factor))
    images, _ = disc_pairs(2, seed=3)
    a = predict_probabilities(model, images, 0, 1, torch.Generator().manual_seed(0))
    b = predict_probabilities(loaded, images, 0, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ModelLoadFailed, match="not an SDSeg checkpoint"):
        read_config(tmp_path)


def test_from_pretrained_diffusers_weights_unconditional_unet(tmp_path):
    """The paper's path: VAE + 4-channel UNet from a diffusers folder, widened with zeros."""
    vae = tiny_vae()
    torch.manual_seed(1)
    unet = UNet2DModel(**{**small_unet_config(8, 4, (16, 32), 1, 0.0), "in_channels": 4}).eval()
    vae.save_pretrained(tmp_path / "base" / "vae")
    unet.save_pretrained(tmp_path / "base" / "unet")
    model = build_from_pretrained(str(tmp_path / "base"), unet_dropout=0.0).eval()
    z, t = torch.randn(1, 4, 8, 8), torch.tensor([999])
    with torch.no_grad():
        torch.testing.assert_close(model.predict_noise(z, torch.randn(1, 4, 8, 8), t), unet(z, t).sample,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.conditioner.encoder(torch.zeros(1, 3, 32, 32)),
                                   vae.encoder(torch.zeros(1, 3, 32, 32)))


def test_from_pretrained_text_to_image_unet_gets_a_null_context(tmp_path):
    from DiffusionSegLib.testing.models import save_tiny_stable_diffusion

    save_tiny_stable_diffusion(tmp_path / "sd")
    model = build_from_pretrained(str(tmp_path / "sd")).eval()
    assert isinstance(model.unet, UNet2DConditionModel) and model.unet.config.in_channels == 8
    images, _ = disc_pairs(1, size=64)
    p = predict_probabilities(model, images, 0, 1, torch.Generator().manual_seed(0))
    assert p.shape == (1, 1, 64, 64)


def test_from_pretrained_missing_reference_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound):
        build_from_pretrained(str(tmp_path / "nowhere"))


def test_half_precision_unet_keeps_z_t_and_the_latent_estimate_fp32():
    """A low-precision UNet (fp16 on GPU) sees a cast input, but the denoiser skip adds the fp32
    z_t and eps_hat / z0_hat come back fp32: no rounded z_t reaches the estimate."""
    from types import SimpleNamespace

    from torch import nn

    class ZeroUNet(nn.Module):
        config = SimpleNamespace(cross_attention_dim=None)

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1, dtype=torch.bfloat16))
            self.seen = None

        def forward(self, x, t, class_labels=None):
            self.seen = x.dtype
            return SimpleNamespace(sample=torch.zeros_like(x[:, :4]))

    model = tiny_model()
    model.unet = ZeroUNet()
    model.denoiser_skip = True
    z_t = torch.randn(2, 4, 8, 8) * 3 + 1e-3
    eps_hat = model.predict_noise(z_t, torch.randn(2, 4, 8, 8), torch.tensor([999, 999]))
    assert model.unet.seen == torch.bfloat16
    assert eps_hat.dtype == torch.float32 and torch.equal(eps_hat, z_t)  # exact: z_t never rounded
    z0 = model.sample_latent(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert z0.dtype == torch.float32


def test_a_slice_result_does_not_depend_on_the_batch_size():
    model = tiny_model().eval()
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        batch = model.predict_probability(images, generator=torch.Generator().manual_seed(5))
        single = torch.cat([model.predict_probability(images[i:i + 1], generator=torch.Generator().manual_seed(5))
                            for i in range(3)])
        other_seed = model.predict_probability(images, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)
    assert not torch.allclose(batch, other_seed)
