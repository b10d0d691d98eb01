"""DiffSeg post-processing (Tian et al., "Diffuse, Attend, and Segment", CVPR 2024) in torch.

From the per-resolution self-attention maps of one UNet pass to an unsupervised segment map:
attention aggregation → anchor grid → iterative KL merging → (optional K-means refinement) →
non-maximum suppression. The steps and constants follow google/diffseg's `segmentor.py`;
the 512/64 constants of the reference are generalised to any latent side L (read from the
maps) and any image side S, so SD 2.x at 768 px (L = 96) works unchanged.

Deliberate deviations, each a fix of a documented flaw in the reference:
- KL in fp32 with probabilities clamped at 1e-12, in matrix form. The reference casts to
  fp16 for the first iteration, where underflowed zeros give 0·log 0 = NaN and silently drop
  pairs (even an anchor from its own group).
- K-means refinement drops empty clusters instead of mis-indexing the cluster means.

Tensors stay on the device they arrive on (the GPU in production): the KL matrices are a few
GFLOP per image and belong there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

EPS = 1e-12


def resolution_weights(resolutions: Sequence[int]) -> dict[int, float]:
    """DiffSeg's aggregation weights: proportional to the map resolution s (8/15, 4/15, 2/15,
    1/15 for SD v1's 64/32/16/8), so fine maps that resolve object boundaries dominate."""
    total = float(sum(resolutions))
    return {int(s): s / total for s in resolutions}


def aggregate_attention(maps: dict[int, "torch.Tensor"], latent_size: int | None = None,
                        weights: dict[int, float] | None = None) -> "torch.Tensor":
    """Fuse head-averaged self-attention maps of several resolutions into Af (B, L², L²).

    maps: {s: (B, s², s²)} per-resolution (layer-averaged) maps, e.g. `AttentionStore.maps`.
    Row q of Af is the attention distribution of query pixel q over the L×L key grid. For a
    resolution s: the key dimensions are upsampled to L×L (bilinear, half-pixel centres as
    Keras' UpSampling2D), each key map renormalised to sum 1, and the query dimensions
    repeated (nearest tiling) by L/s; the maps are summed with `weights` (default
    `resolution_weights`). Accumulates in place, so only Af and one upsampled map exist.
    """
    import torch
    import torch.nn.functional as F

    if not maps:
        raise ValueError("no attention maps to aggregate")
    resolutions = sorted(maps, reverse=True)
    latent_size = latent_size or resolutions[0]
    weights = weights or resolution_weights(resolutions)
    first = maps[resolutions[0]]
    batch = first.shape[0]
    keys = latent_size * latent_size
    fused = torch.zeros(batch, keys, keys, dtype=torch.float32, device=first.device)
    for s in resolutions:
        amap = maps[s].float()
        if amap.shape != (batch, s * s, s * s):
            raise ValueError(f"map at resolution {s} has shape {tuple(amap.shape)}, "
                             f"expected ({batch}, {s * s}, {s * s})")
        if latent_size % s:
            raise ValueError(f"latent size {latent_size} is not a multiple of resolution {s}")
        ratio = latent_size // s
        key_maps = amap.reshape(batch * s * s, 1, s, s)
        if ratio > 1:
            key_maps = F.interpolate(key_maps, size=(latent_size, latent_size), mode="bilinear",
                                     align_corners=False)
        key_maps = key_maps.reshape(batch, s, 1, s, 1, keys)
        key_maps = key_maps / key_maps.sum(-1, keepdim=True)
        # Query tiling by broadcasting into a (B, s, ratio, s, ratio, L²) view of Af.
        fused.view(batch, s, ratio, s, ratio, keys).add_(key_maps, alpha=float(weights[s]))
    return fused


def anchor_grid(latent_size: int, points_per_side: int = 16) -> "torch.Tensor":
    """1-D anchor coordinates: DiffSeg's centred M-point grid with an integer step.

    step = (L-1) // (M-1) and the grid is centred in [0, L-1]; for L = 64, M = 16 this is
    {1, 5, ..., 61} as in the reference, for L = 96 it is {2, 8, ..., 92}. M is capped at L
    (a grid cannot be finer than the latent).
    """
    import torch

    count = max(1, min(points_per_side, latent_size))
    if count == 1:
        return torch.tensor([(latent_size - 1) // 2])
    step = (latent_size - 1) // (count - 1)
    span = step * (count - 1)
    start = (latent_size - 1 - span) // 2
    return torch.arange(count) * step + start


def anchor_indices(latent_size: int, points_per_side: int = 16) -> "torch.Tensor":
    """Flat query indices (row-major y*L + x) of the M×M anchor points."""
    coords = anchor_grid(latent_size, points_per_side)
    return (coords[:, None] * latent_size + coords[None, :]).reshape(-1)


def symmetric_kl(p: "torch.Tensor", q: "torch.Tensor") -> "torch.Tensor":
    """Pairwise symmetric KL, D[i, j] = ½ KL(p_i‖q_j) + ½ KL(q_j‖p_i), in matrix form.

    p: (n, D), q: (m, D) rows are distributions. Expanding the logs gives
    D = ½ (h_p[:, None] − p·log qᵀ + h_q[None, :] − log p·qᵀ) with h = Σ x log x: two (n×D)·(D×m)
    matmuls instead of an (n, m, D) broadcast (256·4096·4096 values for SD). Computed in fp32
    with probabilities clamped at 1e-12 (the reference's fp16 turns 0·log 0 into NaN); tiny
    negative values from cancellation are clipped to 0.
    """
    p = p.float()
    q = q.float()
    log_p = p.clamp_min(EPS).log()
    log_q = q.clamp_min(EPS).log()
    h_p = (p * log_p).sum(-1)
    h_q = (q * log_q).sum(-1)
    cross = p @ log_q.transpose(-1, -2) + log_p @ q.transpose(-1, -2)
    distance = 0.5 * (h_p[:, None] + h_q[None, :] - cross)
    return distance.clamp_min_(0.0)


def symmetric_kl_direct(p: "torch.Tensor", q: "torch.Tensor") -> "torch.Tensor":
    """The same distance by explicit broadcasting (n, m, D); the reference for tests."""
    p = p.float().clamp_min(EPS)[:, None, :]
    q = q.float().clamp_min(EPS)[None, :, :]
    quotient = p.log() - q.log()
    return 0.5 * (p * quotient).sum(-1) - 0.5 * (q * quotient).sum(-1)


def _merge_anchors(fused: "torch.Tensor", anchors: "torch.Tensor", tau: float) -> "torch.Tensor":
    """Iteration 1: each anchor's proposal is the mean of every query map within tau of it."""
    import torch

    distance = symmetric_kl(fused[anchors], fused)  # (A, L²)
    close = (distance < tau).float()
    # D(a, a) = 0 up to rounding; make "an anchor is in its own group" exact so no row is empty.
    close[torch.arange(anchors.shape[0], device=fused.device), anchors] = 1.0
    return (close @ fused) / close.sum(-1, keepdim=True)


def _merge_greedy(proposals: "torch.Tensor", tau: float) -> "torch.Tensor":
    """Iterations 2..N, DiffSeg's greedy pass in index order: an unmarked proposal gathers every
    proposal (marked or not) within tau, their mean becomes one new proposal, all are marked.
    Order-dependent and a proposal may feed several merged maps, exactly as the reference."""
    import torch

    close = symmetric_kl(proposals, proposals) < tau
    close.fill_diagonal_(True)
    close_rows = close.cpu()
    marked = torch.zeros(proposals.shape[0], dtype=torch.bool)
    groups: list[torch.Tensor] = []
    for index in range(proposals.shape[0]):
        if marked[index]:
            continue
        members = close_rows[index]
        marked |= members
        groups.append(members)
    membership = torch.stack(groups).to(proposals.device, torch.float32)
    return (membership @ proposals) / membership.sum(-1, keepdim=True)


def merge_by_kl(fused: "torch.Tensor", thresholds: Sequence[float], anchors: "torch.Tensor",
                check: Callable[[], None] | None = None) -> list["torch.Tensor"]:
    """Iterative attention merging: Af (B, L², L²) → per image a (K_b, L²) tensor of proposals.

    thresholds: one tau per iteration (DiffSeg: N = 3 iterations, e.g. [1.1] * 3). Iteration 1
    compares the anchor maps (query rows `anchors`) with all L² query maps; later iterations
    merge the proposals greedily. `check` is called between images and iterations (a
    cancellation hook).
    """
    if not thresholds:
        raise ValueError("at least one KL threshold (merge iteration) is needed")
    anchors = anchors.to(fused.device)
    results = []
    for image in fused:
        proposals = _merge_anchors(image, anchors, float(thresholds[0]))
        for tau in thresholds[1:]:
            if check is not None:
                check()
            proposals = _merge_greedy(proposals, float(tau))
        results.append(proposals)
    return results


def refine_by_kmeans(fused: "torch.Tensor", proposals: "torch.Tensor", max_iterations: int = 100,
                     tolerance: float = 1e-4) -> "torch.Tensor":
    """Optional K-means refinement (DiffSeg `REFINEMENT`) of one image's proposals.

    Lloyd iterations on the L² query maps of Af (B-less, (L², L²)) with Euclidean distance,
    initialised from the K proposals (sklearn's n_init = 1 init = proposals); the new proposals
    are the cluster means. Clusters that end empty are dropped, where the reference mis-indexes
    the remaining means.
    """
    import torch

    points = fused.float()
    centers = proposals.float().clone()
    point_norms = (points * points).sum(-1, keepdim=True)
    assignment = None
    for _ in range(max_iterations):
        distances = point_norms - 2.0 * points @ centers.T + (centers * centers).sum(-1)[None, :]
        new_assignment = distances.argmin(-1)
        one_hot = torch.nn.functional.one_hot(new_assignment, centers.shape[0]).float()
        counts = one_hot.sum(0)
        sums = one_hot.T @ points
        filled = counts > 0
        new_centers = centers.clone()
        new_centers[filled] = sums[filled] / counts[filled, None]
        shift = (new_centers - centers).pow(2).sum()
        centers = new_centers
        converged = assignment is not None and torch.equal(new_assignment, assignment)
        assignment = new_assignment
        if converged or shift <= tolerance * tolerance:
            break
    counts = torch.bincount(assignment, minlength=centers.shape[0])
    return centers[counts > 0]


NMS_MODES = ("peak", "diffseg")


def non_maximum_suppression(proposals: "torch.Tensor", image_size: int, normalise: str = "diffseg") -> "torch.Tensor":
    """Proposals (K, L²) → segment ids (S, S) in 0..K-1: bilinear upsampling of each proposal map
    to the image (half-pixel centres, DiffSeg's ×8 for 64 → 512) and a per-pixel argmax.

    normalise="diffseg" compares the maps as they are (DiffSeg). A proposal is a distribution
    over the image, so a small one is denser everywhere near it and its upsampled map wins a
    margin of its neighbours' pixels: on the planted model a target covering 1 % of the image
    came out three times too large. normalise="peak" divides each map by its own maximum first,
    so a pixel goes to the proposal it is relatively closest to (ADZUS's default)."""
    import torch.nn.functional as F

    if normalise not in NMS_MODES:
        raise ValueError(f"normalise must be one of {NMS_MODES}; got {normalise!r}")
    count, keys = proposals.shape
    side = int(round(keys ** 0.5))
    if side * side != keys:
        raise ValueError(f"proposals have {keys} entries, not a square latent grid")
    maps = proposals.float().reshape(1, count, side, side)
    if normalise == "peak":
        maps = maps / maps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-30)
    if image_size != side:
        maps = F.interpolate(maps, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return maps[0].argmax(0)


def segment_images(self_maps: dict[int, "torch.Tensor"], image_size: int, *, kl_threshold: float,
                   merge_iterations: int, anchors_per_side: int, refine_kmeans: bool = False,
                   normalise: str = "diffseg",
                   check: Callable[[], None] = lambda: None,
                   progress: Callable[[int, int], None] = lambda done, total: None) -> list["torch.Tensor"]:
    """DiffSeg end to end on a batch of captured self-attention maps: per image a (S, S) map of
    raw segment ids 0..K-1. One image at a time bounds the L²×L² working set; `check` is called
    between images and inside the merge (cancellation), `progress` after each image."""
    latent_size = max(self_maps)
    anchors = anchor_indices(latent_size, anchors_per_side)
    thresholds = [kl_threshold] * merge_iterations
    segments = []
    batch = next(iter(self_maps.values())).shape[0]
    for index in range(batch):
        fused = aggregate_attention({s: m[index:index + 1] for s, m in self_maps.items()}, latent_size)
        (proposals,) = merge_by_kl(fused, thresholds, anchors, check=check)
        if refine_kmeans:
            proposals = refine_by_kmeans(fused[0], proposals)
        segments.append(non_maximum_suppression(proposals, image_size, normalise))
        progress(index + 1, batch)
        check()
    return segments
