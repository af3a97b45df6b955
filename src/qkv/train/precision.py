"""Mixed precision for training and evaluation: bf16 autocast where asked (fp32 master weights, §5.3's Adam)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on CUDA when ``bf16`` (the matrix products in bf16, the weights and the loss in fp32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()
