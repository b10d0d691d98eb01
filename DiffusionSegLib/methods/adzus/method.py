"""ADZUS: zero-shot segmentation from the self-attention of a frozen Stable Diffusion.

Hamrani & Godavarty (2025) apply DiffSeg's attention aggregation, iterative KL merging and
non-maximum suppression to biomedical images, with "latent-space inversion" and
"prompt-driven decoding" named but not specified. Per slice batch this class runs:

    VAE posterior mean × scaling factor → reach timestep t (`inversion.py`) → ONE UNet pass with
    attention capture (no classifier-free guidance) → aggregate → merge → (K-means) → NMS
    (`diffseg.py`) → the prompt's attention per proposal (`prompt_attention.py`) → the decision
    (`decision/selection.py`).

This module imports no torch at import time: the Slicer panel reads `Adzus.info` in a process
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ...contract.errors import InvalidParameter
from ..base import Method, SliceSegmentation
from .spec import INFO

if TYPE_CHECKING:  # pragma: no cover
    import torch

class Adzus(Method):
    info = INFO

    def load(self) -> None:
        from ...models.stable_diffusion import load_stable_diffusion

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
        from .prompt_attention import format_context

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

        from ...diffusion.attention import capture_attention
        from ...diffusion.inversion import reach_timestep

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
            from .shared_proposals import shared_proposals

            segments, cross_maps = shared_proposals(self.parts, self.params, ctx, clean, text, mode,
                                                   embed=self._text_embedding, segment=self._segments)
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
        from .diffseg import segment_images

        params, ctx = self.params, self.context
        return segment_images(self_maps, self.image_size, kl_threshold=float(params["kl_threshold"]),
                              merge_iterations=int(params["merge_iterations"]),
                              anchors_per_side=int(params["anchors_per_side"]),
                              refine_kmeans=bool(params["refine_kmeans"]), normalise=str(params["nms"]),
                              check=ctx.check_cancelled,
                              progress=lambda done, total: ctx.progress("merge", done, total))

    def _select(self, segments: list["torch.Tensor"], valid: "torch.Tensor", mode: str, text: str,
                cross_maps: dict[int, "torch.Tensor"]) -> SliceSegmentation:
        """Proposals and their evidence per slice; `selection.py` decides (per slice here, for the
        whole volume in the pipeline)."""
        import torch

        from ...decision.selection import (
            SelectionParams,
            SliceScores,
            background_level,
            proposal_table,
            select_labels,
        )
        from .prompt_attention import (
            compact_segments,
            prompt_token_positions,
            token_attention,
        )

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
            scores = proposal_table(proposals, evidence, mask, statistic="median")
            table = SliceScores(scores, reference=background_level(scores) if evidence is not None else float("nan"))
            tables.append(table)
            segment_maps.append(compact)
            # this slice alone; the pipeline redoes the decision over the volume
            labels.append(torch.from_numpy(select_labels(proposals, {0: table}, selection).astype("int64")))
        return SliceSegmentation(labels=torch.stack(labels),
                                 segment_map=torch.stack(segment_maps).cpu().to(torch.int64),
                                 consistent_ids=mode != "all", scores=tables, selection=selection,
                                 evidence=attention)
