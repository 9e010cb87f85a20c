"""MUST: multi-path feature fusion and per-metric routing (see ``angiokit.networks.cas_iqa``).

Each auxiliary image opens a path (``CrossAttentionPath``: S attending to it, plus the tokens of
the pixel residual); ``MUST`` pools each path's tokens with every metric's query and weighs the
available paths per metric.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

AUX_PATHS = ("fluoro", "reference")


class CrossAttentionPath(nn.Module):
    """One auxiliary path: S's tokens attending to the auxiliary image's tokens, plus the tokens
    of the residual S - aux (``ResidualEncoder``: it sees aux's pixels beside the residual, as the
    frames are of the same moment). Returns N + N_r tokens: [S attended to aux | residual].

    The residual is compared in pixels, not in tokens: a lost guidewire or side branch is a thin
    line a few pixels wide, which 16-pixel patch tokens of S and aux encoded apart do not keep."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.compare = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, s: torch.Tensor, aux: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        kv = self.norm_kv(aux)
        x = s + self.attention(self.norm_q(s), kv, kv, need_weights=False)[0]
        x = x + self.mlp(self.norm_mlp(x))
        if residual is None:
            return x
        return torch.cat([x, residual + self.compare(residual)], 1)


class MUST(nn.Module):
    """Multi-path feature fusion and per-metric routing (the diagram in ``angiokit.networks.cas_iqa``)."""

    def __init__(self, dim: int, heads: int, paths: Sequence[str] = ("self",) + AUX_PATHS):
        super().__init__()
        self.paths = tuple(paths)
        self.cross = nn.ModuleDict({p: CrossAttentionPath(dim, heads) for p in self.paths if p != "self"})
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.combine = nn.Linear(2 * dim, dim)
        self.router = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, s: torch.Tensor, aux: Dict[str, Optional[torch.Tensor]], queries: torch.Tensor, available: Optional[Dict[str, torch.Tensor]] = None, residuals: Optional[Dict[str, torch.Tensor]] = None):
        """s [B, N, D]; aux name -> [B, N', D] tokens or None; queries [M, D]; ``available``
        name -> [B] bool marks which samples have that auxiliary image (default: all, when given);
        ``residuals`` name -> [B, N_r, D] tokens of S - aux.

        Returns fused [B, M, D], path weights [B, M, P] (zero for missing paths, rows sum to 1)
        and token weights [B, M, P, N'] (N' = the longest path; each path's weights sum to 1).
        """
        b, m = s.shape[0], queries.shape[0]
        tokens, masks = [], []
        for p in self.paths:
            if p == "self":
                tokens.append(s)
                masks.append(torch.ones(b, dtype=torch.bool, device=s.device))
            elif aux.get(p) is not None:
                tokens.append(self.cross[p](s, aux[p], (residuals or {}).get(p)))
                masks.append(available[p].to(s.device).bool() if available and p in available else torch.ones(b, dtype=torch.bool, device=s.device))
            else:
                tokens.append(None)
                masks.append(torch.zeros(b, dtype=torch.bool, device=s.device))
        n = max(t.shape[1] for t in tokens if t is not None)
        # pad to a common token count (the self path has N, auxiliary paths N + N_r); padding is
        # masked out of the token routing
        token_mask = torch.stack([torch.arange(n, device=s.device) < (t.shape[1] if t is not None else 0) for t in tokens])  # [P, N]
        t = torch.stack([F.pad(x, (0, 0, 0, n - x.shape[1])) if x is not None else s.new_zeros(b, n, s.shape[-1]) for x in tokens], 1)  # [B, P, N, D]
        q = self.query(queries)  # [M, D]
        logits = torch.einsum("md,bpnd->bmpn", q, self.key(t)) * self.scale
        logits = logits.masked_fill(~token_mask[None, None], float("-inf"))
        token_weights = logits.softmax(-1).nan_to_num(nan=0.0)  # routing of visual tokens per metric and path
        values = self.value(t)
        attended = torch.einsum("bmpn,bpnd->bmpd", token_weights, values)
        # the strongest response of each feature too: small structures (a guidewire covers a
        # few patches) are lost in any average until the routing has learned to focus
        peak = values.masked_fill(~token_mask[None, :, :, None], float("-inf")).amax(2)
        peak = peak.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)  # [B, P, D]; a missing path has no peak
        pooled = self.combine(torch.cat([attended, peak[:, None].expand_as(attended)], -1))
        qexp = queries[None, :, None, :].expand(b, m, len(self.paths), -1)
        route = self.router(torch.cat([qexp, pooled], -1))[..., 0]  # [B, M, P]
        mask = torch.stack(masks, 1)[:, None, :]  # [B, 1, P]
        path_weights = route.masked_fill(~mask, float("-inf")).softmax(-1)
        fused = torch.einsum("bmp,bmpd->bmd", path_weights, pooled)
        return fused, path_weights, token_weights
