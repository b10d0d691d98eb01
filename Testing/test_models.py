import shutil

import pytest
import torch

from DiffusionSegLib.contract.errors import (
    DeviceUnavailable,
    ModelLoadFailed,
    ModelNotFound,
)
from DiffusionSegLib.models.loading import component_dtype
from DiffusionSegLib.models.references import is_local_reference
from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion, resolve_dtype
from DiffusionSegLib.runtime.devices import resolve_device


def test_tiny_model_loads_through_the_user_path(tiny_sd_path):
    parts = load_stable_diffusion(str(tiny_sd_path), "cpu")
    assert parts.image_size == 64 and parts.latent_size == 8 and parts.vae_scale_factor == 8
    assert parts.dtype == torch.float32 and not any(p.requires_grad for p in parts.unet.parameters())
    context = parts.encode_prompt(["white blood cell", ""])
    assert context.shape == (2, 77, 32)
    latents = parts.encode_image(torch.rand(1, 3, 64, 64))
    assert latents.shape == (1, 4, 8, 8)
    assert parts.decode_latent(latents).shape == (1, 3, 64, 64)


def test_only_requested_components_are_loaded(tiny_sd_path):
    parts = load_stable_diffusion(str(tiny_sd_path), "cpu", components=("vae",))
    assert parts.vae is not None and parts.unet is None and parts.text_encoder is None


def test_pickled_weights_are_refused(tiny_sd_path, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd_path, folder)
    unet = folder / "unet"
    state = __import__("safetensors.torch", fromlist=["load_file"]).load_file(unet / "diffusion_pytorch_model.safetensors")
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, unet / "diffusion_pytorch_model.bin")
    with pytest.raises((ModelLoadFailed, ModelNotFound), match="safetensors|unet"):
        load_stable_diffusion(str(folder), "cpu", components=("unet",))


def test_missing_models_say_what_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFound, match="local folder") as error:
        load_stable_diffusion(str(tmp_path / "nowhere"), "cpu")
    assert "--model" in str(error.value)
    (tmp_path / "half").mkdir()
    with pytest.raises(ModelNotFound, match="'unet' component"):
        load_stable_diffusion(str(tmp_path / "half"), "cpu", components=("unet",))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFound, match=r"Offline mode \(HF_HUB_OFFLINE=1\)") as error:
        load_stable_diffusion("someone/not-a-cached-model", "cpu", components=("unet",))
    assert "hf download someone/not-a-cached-model" in str(error.value)


def test_devices_and_dtypes(monkeypatch):
    from DiffusionSegLib.runtime import dtypes

    assert resolve_device("cpu").type == "cpu"
    native = dtypes.cpu_has_native_bf16()
    assert resolve_dtype(torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype(torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype(torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    # the VAE never runs in fp16 (it overflows); it is loaded in fp32, not rounded first
    assert component_dtype("vae", torch.float16) == torch.float32
    assert component_dtype("unet", torch.float16) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="CUDA"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"
    with pytest.raises(DeviceUnavailable):
        resolve_device("tpu")


def test_reference_kinds():
    assert is_local_reference("./model") and is_local_reference("/opt/models/sd")
    assert not is_local_reference("CompVis/stable-diffusion-v1-4")


def test_random_architecture_reference_builds_real_shapes():
    parts = load_stable_diffusion("random:tiny-sd:128", "cpu", components=("unet", "vae", "tokenizer", "scheduler"))
    assert parts.image_size == 128 and parts.latent_size == 16
    with pytest.raises(ModelNotFound, match="Unknown architecture"):
        load_stable_diffusion("random:sd-v9", "cpu", components=("unet",))
