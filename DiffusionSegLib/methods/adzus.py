"""ADZUS: zero-shot segmentation from the self-attention of a frozen Stable Diffusion.

Hamrani & Godavarty (2025) apply DiffSeg's attention aggregation, iterative KL merging and
non-maximum suppression to biomedical images, with "latent-space inversion" and
"prompt-driven decoding" named but not specified. Per slice batch this class runs:

    VAE posterior mean × scaling factor → reach timestep t (`inversion.py`) → ONE UNet pass with
    attention capture (no classifier-free guidance) → aggregate → merge → (K-means) → NMS
    (`diffseg.py`) → foreground selection (`prompt_voting.py`).

This module imports no torch at import time: the Slicer panel reads `Adzus.info` in a process
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import InvalidParameter
from .base import Method, MethodInfo, Param, SliceSegmentation

if TYPE_CHECKING:  # pragma: no cover
    import torch

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
    Param("foreground", "choice", "auto",
          "Which segments are returned: 'prompt' = cross-attention voting of the prompt's tokens, "
          "'border' = all but segments on the image border, 'all' = every segment as its own label, "
          "'auto' = prompt when a prompt is given, else border.",
          choices=("auto", "prompt", "border", "all"), advanced=False),
    Param("vote_threshold", "float", 1.5,
          "A segment is a candidate when its mean prompt attention is at least this multiple of the volume's "
          "median attention (one reference for all slices, so a slice or the whole volume may be empty).",
          minimum=0.0, maximum=100.0),
    Param("seed_threshold", "float", 2.0,
          "Volume-level step: candidates are kept only when 3D-connected to a segment at least this multiple "
          "of the median (strong evidence); set equal to vote_threshold to keep every candidate.",
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
          "image and reused for every prompt (one cross-attention pass per prompt). See adzus_shared.py.",
          choices=("prompt", "shared")),
    Param("prompt_template", "str", "{prompt}",
          "Text context around the prompt, e.g. 'a microscopy image of a {prompt}'."),
)


class Adzus(Method):
    info = MethodInfo(
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

    def load(self) -> None:
        from ..models import load_stable_diffusion

        self.parts = load_stable_diffusion(self.model or self.info.default_model, self.context.device,
                                           self.context.dtype)
        self.image_size = self.parts.image_size
        self._text_cache: dict[str, torch.Tensor] = {}
        self._positions_cache: dict[str, list[int]] = {}

    def validate(self) -> None:
        self._foreground_mode()
        self._context_text()

    # -- helpers -------------------------------------------------------------------------------

    def _foreground_mode(self) -> str:
        mode = self.params["foreground"]
        has_prompt = bool((self.prompt or "").strip())
        if mode == "auto":
            return "prompt" if has_prompt else "border"
        if mode == "prompt" and not has_prompt:
            raise InvalidParameter("ADZUS foreground 'prompt' needs a text prompt.",
                                   hint="Type what to segment, or choose foreground 'border' or 'all'.")
        return mode

    def _context_text(self) -> str:
        from ..prompt_voting import format_context

        prompt = (self.prompt or "").strip()
        if not prompt:
            return ""  # DiffSeg's unconditional context
        try:
            return format_context(self.params["prompt_template"], prompt)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None

    def _text_embedding(self, text: str) -> "torch.Tensor":
        """CLIP context of the attention pass, computed once per text (slices share it)."""
        if text not in self._text_cache:
            self._text_cache[text] = self.parts.encode_prompt([text])
        return self._text_cache[text]

    # -- the method ----------------------------------------------------------------------------

    def segment(self, images: "torch.Tensor", valid: "torch.Tensor",
                indices: "Sequence[int] | None" = None) -> SliceSegmentation:
        import torch

        from ..attention import capture_attention
        from ..inversion import reach_timestep

        ctx, params, parts = self.context, self.params, self.parts
        mode = self._foreground_mode()
        text = self._context_text()
        timestep = int(params["timestep"])
        batch = images.shape[0]

        ctx.check_cancelled()
        with ctx.timed("encode"), torch.no_grad():
            clean = parts.encode_image(images)  # fp32 latents; cast at the UNet call only
            context = self._text_embedding(text).expand(batch, -1, -1)

        ctx.check_cancelled()
        if params["proposals"] == "shared":  # prompt-independent proposals, cached per slice
            from ..adzus_shared import shared_proposals

            segments, cross_maps = shared_proposals(self, clean, text, mode)
            ctx.check_cancelled()
            with ctx.timed("select"):
                return self._select([s.to(clean.device) for s in segments], valid, mode, text, cross_maps)

        def on_step(done: int, total: int) -> None:
            ctx.progress("inversion", done, total)
            ctx.check_cancelled()

        with ctx.timed("inversion"), torch.no_grad():
            latents = reach_timestep(params["latent_mode"], clean, timestep, unet=parts.unet,
                                     scheduler=parts.scheduler, context=context,
                                     inversion_steps=int(params["inversion_steps"]),
                                     seed=ctx.seed, on_step=on_step)

        ctx.check_cancelled()
        kinds = ("self", "cross") if mode == "prompt" else ("self",)
        with ctx.timed("attention"), torch.no_grad():
            chunk = int(params["attention_chunk"]) or None
            with capture_attention(parts.unet, kinds=kinds, query_chunk_size=chunk) as store:
                t = torch.tensor(timestep, device=latents.device)
                parts.unet(latents.to(parts.unet.dtype), t, encoder_hidden_states=context)
            self_maps = store.maps("self")
            cross_maps = store.maps("cross") if mode == "prompt" else {}
            del store

        ctx.check_cancelled()
        with ctx.timed("merge"):
            segments = self._segments(self_maps)
        del self_maps

        ctx.check_cancelled()
        with ctx.timed("select"):
            return self._select(segments, valid, mode, text, cross_maps)

    def _segments(self, self_maps: dict[int, "torch.Tensor"]) -> list["torch.Tensor"]:
        """Per image a (S, S) map of raw segment ids 0..K-1 (DiffSeg's output)."""
        from ..diffseg import (aggregate_attention, anchor_indices, merge_by_kl, non_maximum_suppression,
                               refine_by_kmeans)

        params, ctx = self.params, self.context
        latent_size = max(self_maps)
        anchors = anchor_indices(latent_size, int(params["anchors_per_side"]))
        thresholds = [float(params["kl_threshold"])] * int(params["merge_iterations"])
        segments = []
        batch = next(iter(self_maps.values())).shape[0]
        for index in range(batch):  # one image at a time bounds the L²×L² working set
            fused = aggregate_attention({s: m[index:index + 1] for s, m in self_maps.items()}, latent_size)
            (proposals,) = merge_by_kl(fused, thresholds, anchors, check=ctx.check_cancelled)
            if params["refine_kmeans"]:
                proposals = refine_by_kmeans(fused[0], proposals)
            segments.append(non_maximum_suppression(proposals, self.image_size))
            ctx.progress("merge", index + 1, batch)
            ctx.check_cancelled()
        return segments

    def _select(self, segments: list["torch.Tensor"], valid: "torch.Tensor", mode: str, text: str,
                cross_maps: dict[int, "torch.Tensor"]) -> SliceSegmentation:
        """Proposals and their evidence per slice; `selection.py` decides (per slice here, for the
        whole volume in the pipeline)."""
        import torch

        from ..prompt_voting import compact_segments, prompt_token_positions, token_attention
        from ..selection import SelectionParams, SliceScores, proposal_table, select_labels

        valid = valid.to(segments[0].device, torch.bool) if segments else valid
        attention = None
        if mode == "prompt":
            if text not in self._positions_cache:  # tokenise once per job, not per batch
                try:
                    self._positions_cache[text] = prompt_token_positions(self.parts.tokenizer, text, self.prompt or "")
                except ValueError as exc:
                    raise InvalidParameter(str(exc)) from None
            attention = token_attention(cross_maps, self._positions_cache[text], self.image_size).float().cpu()
        selection = SelectionParams.from_dict(self.params, mode=mode)
        labels, segment_maps, tables = [], [], []
        for index, raw in enumerate(segments):
            image_valid = valid[index]
            compact, _ = compact_segments(raw, image_valid)
            proposals = compact.cpu().numpy()
            mask = image_valid.cpu().numpy()
            evidence = attention[index].numpy() if attention is not None else None
            reference = float(np.median(evidence[mask])) if evidence is not None and mask.any() else float("nan")
            table = SliceScores(proposal_table(proposals, evidence, mask), reference=reference)
            tables.append(table)
            segment_maps.append(compact)
            # this slice alone; the pipeline redoes the decision over the volume
            labels.append(torch.from_numpy(select_labels(proposals, {0: table}, selection).astype("int64")))
        return SliceSegmentation(labels=torch.stack(labels),
                                 segment_map=torch.stack(segment_maps).cpu().to(torch.int64),
                                 consistent_ids=mode != "all", scores=tables, selection=selection,
                                 evidence=attention)
