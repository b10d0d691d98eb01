"""DiffuGTS end to end: registry metadata, prompt errors, a synthetic-lesion run on the planted
model at the shipped defaults, and training + loading the heads on the tiny SD-shaped model."""

import pytest
import torch

from DiffusionSegLib.contract.errors import (
    InvalidParameter,
    ModelLoadFailed,
    ModelNotFound,
)
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.methods import get_method


def synthetic_lesions(n: int, seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Gray disc 'organ' with one bright round lesion per slice (every fourth slice healthy)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    body = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < (size * 0.42) ** 2
    images, masks = [], []
    for i in range(n):
        image = body * (0.4 + 0.03 * torch.rand(size, size, generator=g))
        cy, cx = (int(v) for v in torch.randint(size // 4, 3 * size // 4, (2,), generator=g))
        radius = int(torch.randint(4, 9, (1,), generator=g))
        lesion = (((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2) & (i % 4 != 3)
        images.append(torch.where(lesion, torch.tensor(0.9), image)[None].expand(3, size, size))
        masks.append(lesion)
    return torch.stack(images).float(), torch.stack(masks)


def make(path, prompt="brain tumour", **params):
    cls = get_method("diffugts")
    return cls(model=str(path), params=cls.info.resolve_params(params), prompt=prompt,
               context=JobContext(device="cpu", seed=0))


def test_registry_metadata_lists_every_parameter():
    info = get_method("diffugts").info
    assert info.prompt == "required" and info.trainable and not info.needs_checkpoint
    names = {p.name for p in info.params}
    assert {"organ", "normal_prompt", "heads", "strength", "steps", "dilation", "beta1", "beta2",
            "threshold_method", "threshold", "aova_timesteps"} <= names
    assert info.resolve_params({})["beta1"] == 0.5 and info.resolve_params({})["beta2"] == 0.5
    with pytest.raises(InvalidParameter):
        info.resolve_params({"strength": 1.5})


@pytest.mark.parametrize("prompt, params, needle", [
    ("", {"organ": "brain"}, "needs a text prompt"),
    ("   ", {"organ": "brain"}, "needs a text prompt"),
    (None, {"organ": "brain"}, "needs a text prompt"),
    ("enhancing tumour", {}, "organ"),  # no organ word left: the message names organ= and normal_prompt=
    ("healthy brain", {"organ": "brain"}, "must differ"),
    ("brain tumour", {"organ": "brain", "aova_timesteps": "0, 2000"}, "aova_timesteps"),
    ("brain tumour", {"organ": "brain", "aova_timesteps": "soon"}, "aova_timesteps"),
    ("brain tumour", {"organ": "brain", "beta1": 0.0, "beta2": 0.0}, r"beta1 \+ beta2"),
])
def test_bad_prompts_and_parameters_fail_before_loading_the_model(tmp_path, prompt, params, needle):
    with pytest.raises(InvalidParameter, match=needle):  # raised when the method is created
        make(tmp_path / "no-model-here", prompt=prompt, **params)


def test_explicit_normal_prompt_overrides_organ(tiny_sd_path):
    method = make(tiny_sd_path, organ="liver", normal_prompt="normal brain scan")
    method.load()
    assert method.pipeline.prompts.normal == "normal brain scan"
    assert method.image_size == 64


def test_synthetic_lesion_run_end_to_end():
    """Every stage on the planted model at the shipped defaults: the refined mask is the lesion,
    a healthy slice (the fourth) stays empty, and the stage invariants hold."""
    method = make("planted", organ="brain")
    method.load()
    size = method.image_size
    images, masks = synthetic_lesions(4, seed=5, size=size)
    valid = torch.ones(4, size, size, dtype=torch.bool)
    valid[:, :, :32] = False
    images[:, :, :, :32] = 0.0
    context = method.context
    result = method.segment(images, valid)
    out = method.pipeline(images, valid)
    assert result.labels.shape == (4, size, size) and result.labels.dtype == torch.int64
    assert torch.equal(result.segment_map, out.proposals) and torch.equal(out.proposals > 0, out.refined)
    # each slice's decision keeps refined components with a seed's evidence: the lesions (the
    # run is seeded, so the pipeline run twice agrees), not the healthy slice's residual noise
    assert torch.equal(result.labels[:3].bool(), out.refined[:3]) and not (result.labels.bool() & ~out.refined).any()
    assert torch.equal(result.labels.bool(), result.probabilities > 0.5)
    assert not (out.refined & ~out.dilated).any() and not (out.refined & ~out.region).any()
    assert not (out.coarse & ~out.region).any() and not out.refined[:, :, :32].any()
    for b in range(3):   # the lesion, found
        found, lesion = out.refined[b], masks[b]
        assert 2 * (found & lesion).sum() / (found.sum() + lesion.sum()) >= 0.85
    assert not result.labels[3].any()   # the healthy slice: nothing decided there
    repainted = out.dilated.flatten(1).any(dim=1)
    for b in range(4):  # slices with nothing to repaint are not run through the inpainting at all
        assert torch.equal(out.pseudo_healthy[b], images[b]) != bool(repainted[b])
    assert {"encode", "aova", "otsu", "inpaint", "residual"} <= set(context.timings)


def test_heads_train_save_load_and_are_used(tiny_sd_path, tmp_path):
    from DiffusionSegLib.methods.diffugts.fit import FitOptions, fit_heads, heads_config
    from DiffusionSegLib.methods.diffugts.heads import load_heads, save_heads
    from DiffusionSegLib.methods.diffugts.validation import pooled_dice

    images, masks = synthetic_lesions(16, seed=0)
    valid = torch.ones(16, 64, 64, dtype=torch.bool)
    method = make(tiny_sd_path, organ="brain", steps=4, strength=0.5)
    method.load()
    pipeline = method.pipeline
    free = pipeline(images, valid)
    losses = []
    adapter, head = fit_heads(pipeline, images, masks, valid,
                              FitOptions(adapter_epochs=40, head_epochs=40, lr=3e-3),
                              log=lambda e: losses.append((e["stage"], e["loss"])))
    adapter_losses = [loss for stage, loss in losses if stage == "adapter"]
    assert adapter_losses[-1] < 0.8 * adapter_losses[0]
    trained = pipeline(images, valid)
    dice_free = sum(pooled_dice(free.refined[i], masks[i]) for i in range(16)) / 16
    dice_trained = sum(pooled_dice(trained.refined[i], masks[i]) for i in range(16)) / 16
    assert dice_trained > dice_free + 0.1  # the heads learn the lesions the frozen model misses

    config = heads_config(pipeline, str(tiny_sd_path))
    folder = save_heads(tmp_path / "heads", config, adapter, head, "# test heads\n")
    assert {p.name for p in folder.iterdir()} == {"config.json", "heads.safetensors", "README.md"}
    loaded = make(tiny_sd_path, organ="brain", steps=4, strength=0.5, heads=str(folder))
    loaded.load()
    again = loaded.segment(images, valid)
    assert torch.equal(again.segment_map, trained.proposals)  # the same refined components
    assert not (again.labels.bool() & ~trained.refined).any()

    _, a2, h2 = load_heads(folder)
    assert all(torch.equal(x, y) for x, y in zip(adapter.state_dict().values(), a2.state_dict().values()))
    with pytest.raises(ModelNotFound):
        load_heads(tmp_path / "missing")
    (folder / "config.json").write_text('{"format": "other"}')
    with pytest.raises(ModelLoadFailed):
        load_heads(folder)


def test_image_head_learns_slice_labels_and_gates_the_pipeline(tiny_sd_path):
    from DiffusionSegLib.methods.diffugts.image_head import (
        ImageHead,
        image_statistics,
        train_image_head,
    )

    generator = torch.Generator().manual_seed(0)
    region = torch.ones(40, 16, 16, dtype=torch.bool)
    labels = torch.arange(40) % 2 == 0
    probability = 0.2 * torch.rand(40, 16, 16, generator=generator)
    probability[labels, 4:8, 4:8] = 0.9  # tumour slices: a confident blob
    gate = torch.where(labels, torch.tensor(9.0), torch.tensor(2.3))
    statistics = image_statistics(probability, region, gate)
    head = train_image_head(statistics, labels, steps=200)
    predicted = torch.sigmoid(head(statistics)) > 0.5
    assert torch.equal(predicted, labels)

    # in the pipeline, the head's probability is the slice's gate (here: a head that says "no")
    images, _ = synthetic_lesions(2, seed=3)
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    method = make(tiny_sd_path, organ="brain", steps=2, strength=0.5)
    method.load()
    from DiffusionSegLib.methods.diffugts.heads import AOVAAdapter

    features = method.pipeline.frozen_inputs(images, valid).encoder_features
    method.pipeline.adapter = AOVAAdapter([f.shape[1] for f in features], method.pipeline.text_vectors.shape[-1])
    never = ImageHead().eval()
    torch.nn.init.zeros_(never.net[2].weight)
    torch.nn.init.constant_(never.net[2].bias, -20.0)
    method.pipeline.image_head = never
    out = method.pipeline(images, valid)
    assert (out.gate < 1e-6).all() and all(t.gate == out.gate[b] for b, t in enumerate(out.scores))


def test_unet_feature_adapter_sees_fresh_noise_in_training_and_a_seeded_draw_at_inference(tiny_sd_path, tmp_path):
    import dataclasses

    from DiffusionSegLib.methods.diffugts.fit import (
        FitOptions,
        adapter_inputs,
        backbone_cache,
        heads_config,
        train_adapter,
    )
    from DiffusionSegLib.methods.diffugts.heads import save_heads

    images, masks = synthetic_lesions(6, seed=2)
    valid = torch.ones(6, 64, 64, dtype=torch.bool)
    method = make(tiny_sd_path, organ="brain", steps=2, strength=0.5)
    method.load()
    pipeline = method.pipeline
    pipeline.settings = dataclasses.replace(pipeline.settings, adapter_features="unet")
    cache = backbone_cache(pipeline, images, valid, 3)
    index = torch.arange(3)
    generator = torch.Generator().manual_seed(0)
    first, second = adapter_inputs(pipeline, cache, index, generator), adapter_inputs(pipeline, cache, index, generator)
    assert not torch.equal(first[0], second[0])  # a fresh draw at every training step
    seeded = adapter_inputs(pipeline, cache, index, None)
    frozen = pipeline.frozen_inputs(images[:3], valid[:3], [0, 1, 2])
    for a, b in zip(seeded, frozen.unet_features):  # inference's per-slice seeded draw
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
    adapter = train_adapter(pipeline, cache, masks, FitOptions(adapter_epochs=2, batch_size=3))
    assert adapter.feature_channels == [f.shape[1] for f in frozen.unet_features]
    config = heads_config(pipeline, str(tiny_sd_path))
    assert config["adapter_features"] == "unet"
    folder = save_heads(tmp_path / "heads", config, adapter, None, "# test\n")
    loaded = make(tiny_sd_path, organ="brain", steps=2, strength=0.5, heads=str(folder))
    loaded.load()
    assert loaded.pipeline.settings.adapter_features == "unet"
    pipeline.adapter = adapter
    torch.testing.assert_close(loaded.pipeline(images[:3], valid[:3]).anomaly, pipeline(images[:3], valid[:3]).anomaly)
