"""DiffuGTS's absent-target evidence: the image-level gate statistic and, per slice, the refined
mask's connected components with their mean anomaly evidence (the proposals and scores that
`selection.py` turns into labels for the whole volume)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ...decision.selection import SliceScores, proposal_table

NOISE_QUANTILE = 0.99
MAD_TO_SIGMA = 1.4826


def gate_statistic(difference: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per slice, how far the top 1 % of the signed anomaly difference stands above the slice's
    median, in robust standard deviations (MAD × 1.4826), (B,).

    Calibrated against the slice's own noise: if the two prompts' maps differ by noise only, the
    statistic is about 2.3 (the 99th percentile of a normal), whatever the noise amplitude; a
    region the anomaly prompt singles out pushes it far higher. 0 for a slice without body."""
    out = torch.zeros(difference.shape[0])
    for b in range(difference.shape[0]):
        values = difference[b][region[b]].float().cpu()
        if values.numel() < 2:
            continue
        median = values.median()
        spread = MAD_TO_SIGMA * (values - median).abs().median()
        top = torch.quantile(values, NOISE_QUANTILE)
        out[b] = float((top - median) / spread.clamp_min(1e-6))
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
