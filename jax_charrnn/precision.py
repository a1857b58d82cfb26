"""What mixed precision (--compute_dtype=bfloat16) asks of the machine.

bfloat16 products are fast where the hardware multiplies bfloat16 numbers: GPUs and TPUs, and x86
CPUs with AVX-512 BF16 or AMX units (measured on an AMD EPYC with avx512_bf16: docs/results.md).
On a CPU without them XLA has no bfloat16 multiplier to use, so expect no gain over float32,
only the rounding (not measured here: the machines at hand had the units). The trainer warns.
"""

from __future__ import annotations

import jax

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for x86's bfloat16 units


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
  """The CPU's feature flags (Linux), or None where they cannot be read."""
  try:
    with open(cpuinfo, encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith(("flags", "Features")):
          return set(line.split(":", 1)[1].split())
  except OSError:
    return None
  return None


def slow_bfloat16_warning(compute_dtype: str, cpuinfo: str = "/proc/cpuinfo") -> str:
  """A sentence when bfloat16 products would run on a CPU without bfloat16 units ("" when
  they would not: float32 products, an accelerator, a CPU with the units, or flags unknown)."""
  if compute_dtype != "bfloat16" or jax.default_backend() != "cpu":
    return ""
  flags = cpu_flags(cpuinfo)
  if flags is None or flags & set(BF16_FLAGS):
    return ""
  return ("compute_dtype=bfloat16 on a CPU without bfloat16 units (no avx512_bf16 or amx_bf16 "
          "in its flags): XLA has no bfloat16 multiplier to use here, so expect this run to be "
          "no faster than with float32 (likely slower), only less exact. Leave compute_dtype "
          "out on this machine.")
