"""Named network sizes: the one place where a ViT's width, depth, heads and MLP size are spelled.

The MAE / VasoMIM presets (S/16, B/16 - the paper's default - and L/16) and two CPU sizes used by
the demo, the tests and the CPU experiments; every network of angiokit takes ``preset=NAME``.
A checkpoint records the sizes it was built with (``angiokit.networks.checkpoint``), so a size is
named when training starts and never again.
"""

from __future__ import annotations

from typing import Dict

PRESETS: Dict[str, dict] = {
    "vit_s16": dict(hidden_size=384, mlp_dim=1536, num_layers=12, num_heads=6),
    "vit_b16": dict(hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12),
    "vit_l16": dict(hidden_size=1024, mlp_dim=4096, num_layers=24, num_heads=16),
    # CPU sizes (not the paper's): the main job's ViT, and the quick / test one
    "vit_cpu": dict(hidden_size=128, mlp_dim=512, num_layers=4, num_heads=2),
    "vit_tiny": dict(hidden_size=64, mlp_dim=256, num_layers=2, num_heads=1),
}


def vit_size(width: int, depth: int) -> Dict[str, int]:
    """Constructor sizes of a ViT ``width`` wide and ``depth`` blocks deep, shaped as the MAE
    presets are: a head per 64 channels, an MLP four times as wide."""
    return dict(hidden_size=int(width), mlp_dim=4 * int(width), num_layers=int(depth), num_heads=max(int(width) // 64, 1))


def size_overrides(width: int, depth: int) -> Dict[str, object]:
    """Bundle overrides (``python -m monai.bundle run ... --KEY VALUE``) that train a ViT of that
    width and depth: ``{"preset": NAME}`` where a named size matches, else the ``network_def#``
    ids. Only training needs them: what it writes carries its sizes."""
    size = vit_size(width, depth)
    for name, preset in PRESETS.items():
        if preset == size:
            return {"preset": name}
    return {"preset": "vit_s16", **{f"network_def#{k}": v for k, v in size.items()}}
