"""Process-wide CUDA settings the train configs set at start (no effect on a CPU)."""

from __future__ import annotations

import torch


def configure_cuda(tf32: bool = True, cudnn_benchmark: bool = True) -> None:
    """TF32 matmuls and convolutions (float32 work on tensor cores, ~10-bit mantissa; bf16
    autocast covers most of the step already) and cuDNN's autotuner (input sizes are fixed in
    training)."""
    if not torch.cuda.is_available():
        return
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
