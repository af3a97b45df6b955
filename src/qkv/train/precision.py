"""Mixed precision for training, evaluation and decoding: bf16 autocast where the hardware has it.

The paper trained in fp32 (§5.2); bf16 autocast is an option (a deviation in rounding, not in the model):
the matrix products run in bf16, while the weights, the optimizer state (§5.3's Adam), the loss and the
checkpoints stay fp32. ``precision`` is one of

- ``"fp32"``: no autocast, bit-for-bit the fp32 computation (the library default: the paper's numbers);
- ``"bf16"``: bf16 autocast on the device (CUDA, or CPU: there it is only fast with native bf16 units);
- ``"auto"``: ``"bf16"`` where the device computes bf16 natively and fast (CUDA with bf16; a CPU with
  AVX512-BF16 or AMX), else ``"fp32"``. The command line's default; it logs what it chose.

Example:
    >>> device = torch.device("cpu")
    >>> choice = resolve_precision("auto", device)            # "bf16" on an AVX512-BF16/AMX CPU, else "fp32"
    >>> with autocast(device, choice == "bf16"):              # doctest: +SKIP
    ...     logits = model(src, tgt_in)
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
#: The native bf16 units of a CPU: (name in the log, torch's run-time probe, its /proc/cpuinfo flag).
BF16_CPU_UNITS = (
    ("AVX512-BF16", "_is_avx512_bf16_supported", "avx512_bf16"),  # bf16 dot products in AVX-512 registers
    ("AMX", "_is_amx_tile_supported", "amx_bf16"),  # Intel's tile matrix unit (Sapphire Rapids and later)
)


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo, e.g. macOS)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_bf16_units() -> list[str]:
    """The native bf16 units this CPU has, by name (``["AVX512-BF16", "AMX"]``, either, or none), asked of
    torch's own CPU detection, then of the ``/proc/cpuinfo`` flags."""
    flags = cpu_flags()
    units = []
    for name, probe_name, flag in BF16_CPU_UNITS:
        probe = getattr(torch.cpu, probe_name, None)
        if (probe is not None and probe()) or flag in flags:
            units.append(name)
    return units


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively: AVX512-BF16 or AMX (:func:`cpu_bf16_units`)."""
    return bool(cpu_bf16_units())


def device_has_fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``: CUDA with bf16 support, or a CPU with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def check_precision(precision: str, where: str = "precision") -> None:
    """Raise ``ValueError`` naming ``where`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` or ``"fp32"`` for ``device`` (see the module docstring); the others as given.

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        device: where the model runs.

    Returns:
        ``"fp32"`` or ``"bf16"``.
    """
    check_precision(precision)
    if precision != "auto":
        return precision
    return "bf16" if device_has_fast_bf16(torch.device(device)) else "fp32"


def describe_precision(precision: str, device: str | torch.device) -> str:
    """One line for the run log: what ``precision`` became on ``device`` and why."""
    chosen = resolve_precision(precision, device)
    device = torch.device(device)
    if precision != "auto":
        return f"precision {chosen} (asked for) on {device}"
    why = "native bf16" if chosen == "bf16" else "no fast bf16"
    if device.type == "cpu":
        units = cpu_bf16_units()
        found = ", ".join(f"{name} {'found' if name in units else 'not found'}" for name, _, _ in BF16_CPU_UNITS)
        why += f" (CPU capability {torch.backends.cpu.get_cpu_capability()}, {found})"
    return f"precision auto -> {chosen} on {device}: {why}"


def autocast(device: str | torch.device, bf16: bool) -> AbstractContextManager:
    """bf16 autocast on ``device`` (CUDA or CPU) when ``bf16``: the matrix products in bf16, the weights and
    the loss in fp32. A no-op otherwise, and on devices without bf16 autocast."""
    device = torch.device(device)
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
