"""The ADZUS method end to end on the tiny model: metadata, outputs, foreground modes, stage
timings, progress and cancellation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from DiffusionSegLib.contract.errors import InvalidParameter, JobCancelled
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.decision.selection import proposal_table
from DiffusionSegLib.methods import get_method
from DiffusionSegLib.methods.adzus.method import Adzus

TAU = 0.1  # the tiny model's attention is far flatter than SD's, so its KL distances are small


def make_method(tiny_sd_path, prompt=None, events=None, **params):
    """ADZUS on the tiny model with self-attention logits sharpened ×16 (q and k weights ×4): a
    randomly initialised UNet attends almost uniformly (all KL distances < 0.005), which would
    merge every image into one segment; sharpened, attention depends on the content."""
    context = JobContext(emit=(events.append if events is not None else (lambda e: None)), device="cpu")
    method = Adzus(model=str(tiny_sd_path), params=resolve(**params), prompt=prompt, context=context)
    method.load()
    with torch.no_grad():
        for name, module in method.parts.unet.named_modules():
            if name.endswith("attn1"):
                module.to_q.weight.mul_(4.0)
                module.to_k.weight.mul_(4.0)
    return method


def resolve(**params):
    values = {"latent_mode": "clean", "kl_threshold": TAU}
    values.update(params)
    return Adzus.info.resolve_params(values)


def disc_images(size=64, batch=2):
    """A bright disc on a dark background, letterboxed: the top 8 rows are padding."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - 36) ** 2 + (xx - 32) ** 2 < 14 ** 2).float()
    images = torch.stack([0.15 + 0.7 * disc, 0.2 + 0.6 * disc.flip(1), 0.1 + 0.5 * disc], 0)
    images = images[None].repeat(batch, 1, 1, 1)
    if batch > 1:
        images[1] = images[1].flip(-1)
    valid = torch.ones(batch, size, size, dtype=torch.bool)
    valid[:, :8] = False
    images[:, :, :8] = 0.0
    return images.contiguous(), valid


def assert_union_of_segments(result):
    """Binary labels that keep or drop whole segments; padding is 0 everywhere."""
    labels, segments = result.labels, result.segment_map
    assert set(labels.unique().tolist()) <= {0, 1}
    for image_labels, image_segments in zip(labels, segments):
        for segment in image_segments.unique().tolist():
            values = image_labels[image_segments == segment].unique()
            assert values.numel() == 1
            if segment == 0:
                assert values.item() == 0


def test_registered_with_metadata():
    assert get_method("adzus") is Adzus
    info = Adzus.info
    assert info.prompt == "optional" and not info.needs_checkpoint
    assert info.default_model == "CompVis/stable-diffusion-v1-4"
    defaults = info.resolve_params({})
    assert defaults["timestep"] == 300 and defaults["latent_mode"] == "ddim_inversion"
    assert defaults["kl_threshold"] == 1.1 and defaults["merge_iterations"] == 3
    assert defaults["anchors_per_side"] == 16 and defaults["foreground"] == "auto"
    with pytest.raises(InvalidParameter):
        info.resolve_params({"latent_mode": "sdedit"})


def test_module_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "from DiffusionSegLib.methods.adzus.method import Adzus; print(Adzus.info.name)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "adzus"


@pytest.fixture(scope="module")
def method(tiny_sd_path):
    return make_method(tiny_sd_path)


def test_all_mode_returns_every_segment(method):
    method.params = resolve(foreground="all")
    images, valid = disc_images()
    assert method.image_size == 64
    result = method.segment(images, valid)
    assert result.labels.shape == (2, 64, 64) and result.labels.dtype == torch.int64
    assert not result.consistent_ids
    assert torch.equal(result.labels, result.segment_map)
    for image_segments, image_valid in zip(result.segment_map, valid):
        assert (image_segments[~image_valid] == 0).all()
        ids = image_segments[image_valid].unique().tolist()
        assert ids == list(range(1, len(ids) + 1)) and len(ids) > 1


def test_border_mode_selects_whole_segments(method):
    method.params = resolve(foreground="border")
    images, valid = disc_images()
    result = method.segment(images, valid)
    assert result.consistent_ids
    assert_union_of_segments(result)
    for index in range(2):
        kept = result.labels[index][valid[index]].float().mean()
        assert 0.0 < kept < 1.0  # the segment holding most of the border is always dropped
        segments = result.segment_map[index]
        table = proposal_table(segments.numpy(), None, valid[index].numpy())
        most = max(table, key=lambda pid: table[pid]["border"])
        assert (result.labels[index][segments == most] == 0).all()


def test_prompt_mode_votes_with_the_prompt_tokens(tiny_sd_path):
    events: list[dict] = []
    method = make_method(tiny_sd_path, prompt="white blood cell", events=events,
                         prompt_template="a microscopy image of a {prompt}")
    images, valid = disc_images()
    result = method.segment(images, valid)
    assert result.consistent_ids
    assert_union_of_segments(result)
    # evidence per proposal: the absolute prompt share, and the slice's median as reference
    assert result.selection.mode == "prompt" and len(result.scores) == 2
    for table, segments in zip(result.scores, result.segment_map):
        assert set(table.proposals) == set(segments.unique().tolist()) - {0}
        assert 0.0 < table.reference < 1.0
        assert all(0.0 <= v["score"] <= 1.0 for v in table.proposals.values())
    assert set(method.context.timings) == {"encode", "inversion", "attention", "merge", "select"}
    assert [e["done"] for e in events if e.get("stage") == "merge"] == [1, 2]


def test_ddim_inversion_reports_steps_and_text_is_encoded_once(tiny_sd_path, monkeypatch):
    events: list[dict] = []
    method = make_method(tiny_sd_path, prompt="lesion", events=events, latent_mode="ddim_inversion",
                         inversion_steps=10, foreground="prompt")
    calls: list[list[str]] = []
    original = method.parts.encode_prompt
    monkeypatch.setattr(method.parts, "encode_prompt", lambda texts: calls.append(texts) or original(texts))
    images, valid = disc_images(batch=1)
    first = method.segment(images, valid)
    second = method.segment(images, valid)
    assert calls == [["lesion"]]
    assert [(e["done"], e["total"]) for e in events if e.get("stage") == "inversion"] == [(1, 3), (2, 3), (3, 3)] * 2
    assert torch.equal(first.labels, second.labels)  # deterministic


def test_noise_mode_is_seeded_and_chunking_changes_nothing(tiny_sd_path):
    method = make_method(tiny_sd_path, latent_mode="noise", foreground="all")
    images, valid = disc_images(batch=1)
    a = method.segment(images, valid).segment_map
    b = method.segment(images, valid).segment_map
    assert torch.equal(a, b)
    method.params = resolve(latent_mode="noise", foreground="all", attention_chunk=10)
    assert torch.equal(method.segment(images, valid).segment_map, a)


def test_prompt_foreground_without_prompt_is_a_parameter_error(method):
    method.params = resolve(foreground="prompt")
    with pytest.raises(InvalidParameter, match="needs a text prompt"):
        method.segment(*disc_images(batch=1))


def test_cancellation_during_inversion_raises(tiny_sd_path):
    context_holder: list[JobContext] = []

    def cancel_on_inversion(event):
        if event.get("stage") == "inversion":
            context_holder[0].cancel_token.cancel()

    method = make_method(tiny_sd_path, latent_mode="ddim_inversion", inversion_steps=10)
    method.context.emit = cancel_on_inversion
    context_holder.append(method.context)
    with pytest.raises(JobCancelled):
        method.segment(*disc_images(batch=1))
    assert "attention" not in method.context.timings  # stopped before the attention pass


def test_refine_and_tau_change_segment_counts_sensibly(method):
    images, valid = disc_images(batch=1)
    counts = []
    for tau in (0.02, 0.1, 0.2, 1.1, 50.0):
        method.params = resolve(foreground="all", kl_threshold=tau)
        counts.append(int(method.segment(images, valid).segment_map.max()))
    assert counts == sorted(counts, reverse=True) and counts[0] > 10 and counts[-1] == 1
    method.params = resolve(foreground="all", refine_kmeans=True)
    refined = method.segment(images, valid).segment_map
    assert 1 <= int(refined.max()) <= counts[1]  # refinement never adds clusters


def test_selection_on_planted_segments(method):
    """The method's selection step on a hand-made segment map: a central disc (id 1) in a
    background (id 0) with a side region (id 2); cross-attention of the prompt's tokens is high
    on the disc only."""
    method.prompt = "white blood cell"
    method.params = resolve(prompt_template="an image of a {prompt}")
    size = method.image_size
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (yy - 36) ** 2 + (xx - 32) ** 2 < 12 ** 2
    raw = torch.zeros(size, size, dtype=torch.long)
    raw[disc] = 1
    raw[8:20, :10] = 2
    valid = torch.ones(1, size, size, dtype=torch.bool)
    valid[:, :8] = False
    text = "an image of a white blood cell"  # tokens 5, 6, 7 carry the prompt
    cross = torch.zeros(1, 64, 77)
    cross[..., 0], cross[..., 6] = 0.95, 0.05  # every pixel gives the prompt a little attention
    low = torch.nn.functional.interpolate(disc[None, None].float(), size=(8, 8), mode="area")[0, 0]
    on_disc = low.flatten() > 0.5
    cross[0, on_disc, 0], cross[0, on_disc, 6] = 0.4, 0.6
    try:
        prompt = method._select([raw], valid, "prompt", text, {8: cross})
        border = method._select([raw], valid, "border", "", {})
        method.params = resolve(border_threshold=0.05)
        strict = method._select([raw], valid, "border", "", {})
    finally:
        method.prompt = None
    compact = prompt.segment_map[0]
    disc_id = int(compact[36, 32])
    assert torch.equal(prompt.labels[0].bool(), compact == disc_id)
    # Border rule: the background holds most of the valid border, the side region 21 of its 236
    # pixels (9 %): kept at threshold 0.2, dropped at 0.05; the disc is always kept.
    side_id = int(compact[10, 0])
    assert torch.equal(border.labels[0].bool(), (compact == disc_id) | (compact == side_id))
    assert torch.equal(strict.labels[0].bool(), compact == disc_id)
