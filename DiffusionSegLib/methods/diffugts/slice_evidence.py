"""DiffuGTS's evidence per slice: the image-level gate statistic and the refined mask's connected
components with their mean anomaly evidence (the proposals and scores that
`decision/selection.py` turns into labels for the whole volume)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ...decision.selection import SliceScores, proposal_table

MAD_TO_SIGMA = 1.4826
# The gate's noise level never drops below this, in the difference's units (the normal prompt's
# mean attention in the body): a tenth of the default anomaly floor. A flat map is not noise-free
# evidence of an anomaly.
MIN_SPREAD = 0.05


def gate_statistic(difference: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per slice, how far the region the anomaly prompt singles out stands above the rest of the
    body, in the rest's robust standard deviations, (B,).

    The body's values are split in two by Otsu's threshold; the statistic is (mean of the upper
    part − median of the lower part) / (MAD × 1.4826 of the lower part, at least MIN_SPREAD). If
    the two prompts differ by noise only, Otsu cuts the noise and the statistic is about 2; a
    lesion stands many deviations above the tissue around it whatever its size — from a few
    pixels to most of the body, as long as some healthy tissue is left to compare with (a top
    quantile of the map could not see a lesion smaller than its quantile, nor a median one
    larger than half the body). 0 for a slice without body or with a flat map."""
    from .residual import otsu_threshold

    out = torch.zeros(difference.shape[0])
    for b in range(difference.shape[0]):
        values = difference[b][region[b]].float().cpu()
        if values.numel() < 2 or float(values.max() - values.min()) <= 0:
            continue
        cut = otsu_threshold(values)
        upper, lower = values[values > cut], values[values <= cut]
        if upper.numel() == 0 or lower.numel() < 2:
            continue
        level = lower.median()
        spread = max(MAD_TO_SIGMA * float((lower - level).abs().median()), MIN_SPREAD)
        out[b] = float((upper.mean() - level) / spread)
    return out


def slice_proposals(refined: torch.Tensor, evidence: torch.Tensor, valid: torch.Tensor,
                    gates: torch.Tensor | None) -> tuple[torch.Tensor, list[SliceScores]]:
    """Connected components (8-connectivity) of each refined mask, ids 1..K, and per component
    the mean `evidence` (anomaly difference, or the adapter's probability) inside it."""
    proposals, tables = [], []
    for b in range(refined.shape[0]):
        components, _ = ndimage.label(refined[b].cpu().numpy(), structure=np.ones((3, 3), bool))
        mask = valid[b].bool().cpu().numpy()
        table = proposal_table(components, evidence[b].float().cpu().numpy(), mask)
        gate = None if gates is None else float(gates[b])
        tables.append(SliceScores(table, gate=gate))
        proposals.append(torch.from_numpy(components.astype(np.int64)))
    return torch.stack(proposals), tables
