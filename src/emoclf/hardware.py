"""What this machine can compute fast, in one place: instruction sets, usable cores, GPUs.

Every choice that depends on the CPU asks here and nowhere else: ``precision=auto`` (bf16 only
where the CPU has AMX), int8 export settings (full 8-bit weights only where int8
dot products cannot saturate), inference threads, and the hardware line of benchmarks and
``environment.json``.

How threads wait is set here too (``configure_threads``): OpenMP reads it once, when torch loads, so the CLI
calls it before any heavy import.

Instruction sets come from torch's CPUID probe (the cpuinfo library), not from ``/proc/cpuinfo``:
CPUID is what the process really gets (under an emulator such as ``qemu-x86_64 -cpu Haswell`` too,
where ``/proc/cpuinfo`` still describes the host), and it works on every OS.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    arch: str
    cpu: str
    cores: int  # cores this process may use (affinity and cgroup sets), not the machine's count
    mhz: float | None  # nominal clock from /proc/cpuinfo, for peak-FLOPs estimates
    avx2: bool
    avx512: bool
    vnni: bool  # AVX512-VNNI: u8 x s8 dot products accumulate in int32, never saturating int16
    avx512_bf16: bool
    amx: bool  # AMX tiles: bf16 and int8 matrix multiplies
    gpus: tuple[str, ...]

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i686", "i386")

    @property
    def isa(self) -> list[str]:
        """The instruction sets that matter here, as users know them."""
        names = (
            ("avx2", "AVX2"),
            ("avx512", "AVX-512"),
            ("vnni", "AVX512-VNNI"),
            ("avx512_bf16", "AVX512-BF16"),
            ("amx", "AMX"),
        )
        return [label for attr, label in names if getattr(self, attr)]

    @property
    def bf16_fast(self) -> bool:
        """bf16 beats fp32 on this CPU: AMX only. AVX512-BF16 alone was measured slower than fp32 (training
        MiniLM under bf16 autocast: 70 against 88 examples/s on a 2-core Xeon without AMX, docs/training-speed.md)."""
        return self.amx

    @property
    def int8_full_range_exact(self) -> bool:
        """Whether int8 matmuls with full 8-bit weights are exact here.

        On x86 without VNNI or AMX, ONNX Runtime multiplies u8 activations by s8 weights with
        VPMADDUBSW, which adds pairs of products into int16 and saturates (its quantisation guide:
        use 7-bit weights, ``reduce_range``, there). ARM's dot-product and widening multiplies do not.
        """
        return self.vnni or self.amx or not self.x86

    def ops_per_cycle(self) -> dict[str, tuple[int, str]]:
        """Arithmetic operations (a multiply-add counts 2) one core can do per cycle at best, by precision, and the
        instruction behind each figure: the peak that benchmarks report their share of."""
        if self.avx512:
            fp32 = 64, "2 FMA units x 16 fp32 lanes (AVX-512) x 2"
        elif self.avx2:
            fp32 = 32, "2 FMA units x 8 fp32 lanes (AVX2) x 2"
        else:
            fp32 = 8, "no AVX2: 4-lane SSE x 2"
        if self.amx:
            bf16 = 1024, "AMX TDPBF16PS: 16x16x32 bf16 multiply-adds per 16 cycles x 2"
        elif self.avx512_bf16:
            bf16 = 128, "AVX512-BF16 VDPBF16PS: 2 units x 32 bf16 pairs x 2"
        else:
            bf16 = fp32[0], "no bf16 instructions: bf16 runs at fp32 speed at best"
        if self.amx:
            int8 = 2048, "AMX TDPBUSD: 16x16x64 u8 x s8 multiply-adds per 16 cycles x 2"
        elif self.vnni:
            int8 = 256, "AVX512-VNNI VPDPBUSD: 2 units x 64 u8 x s8 multiply-adds x 2"
        elif self.avx512:
            int8 = 128, "no VNNI: VPMADDUBSW then VPMADDWD, 2 instructions per 64 multiply-adds, 2 units, x 2"
        elif self.avx2:
            int8 = 64, "no VNNI: VPMADDUBSW then VPMADDWD (AVX2), 2 instructions per 32 multiply-adds, 2 units, x 2"
        else:
            int8 = 32, "no AVX2: 128-bit PMADDUBSW then PMADDWD, 2 units, x 2"
        return {"fp32": fp32, "bf16": bf16, "int8": int8}

    def peak(self, threads: int | None = None) -> dict:
        """Peak operations per second of ``threads`` cores (default: all usable) in each precision, with the
        arithmetic: cores x nominal clock x operations per cycle per core."""
        cores = min(threads or self.cores, self.cores)
        ghz = (self.mhz or float("nan")) / 1000
        per_cycle = self.ops_per_cycle()
        return {
            "cores": cores,
            "ghz": ghz,
            **{f"{p}_ops_per_cycle": n for p, (n, _) in per_cycle.items()},
            **{f"{p}_peak_gops": round(cores * ghz * n, 1) for p, (n, _) in per_cycle.items()},
            "assumptions": "peak = cores * cpu MHz * operations/cycle/core (a multiply-add is 2); "
            + "; ".join(f"{p}: {why}" for p, (_, why) in per_cycle.items())
            + "; vCPUs counted as cores; no turbo",
        }

    def describe(self) -> str:
        isa = " ".join(self.isa) or "no AVX2"
        gpus = f", GPU {', '.join(self.gpus)}" if self.gpus else ""
        return f"{self.cpu} ({self.arch}, {self.cores} cores, {isa}){gpus}"

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "gpus": list(self.gpus),
            "isa": self.isa,
            "bf16_fast": self.bf16_fast,
            "int8_full_range_exact": self.int8_full_range_exact,
        }


# torch's OpenMP threads sleep while they wait for work instead of spinning (libgomp's default spins for a while
# first). Beside another busy process, a spinning thread holds a core the other needs, and every parallel region
# waits for the thread the scheduler parked: 2 spinning threads trained MiniLM at a fifth of the speed of 2
# sleeping ones on a shared 2-core machine (docs/training-speed.md, "Beside other work"). A value set already wins.
THREAD_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_threads() -> None:
    """Set ``THREAD_ENVIRONMENT`` where the user has not: before torch is imported, or it has no effect."""
    for name, value in THREAD_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _probe(name: str) -> bool:
    import torch

    check = getattr(torch.cpu, f"_is_{name}_supported", None)
    try:
        return bool(check()) if check else False
    except RuntimeError:
        return False


@functools.cache
def detect() -> Hardware:
    """This process's hardware, probed once."""
    import torch

    info = _cpuinfo()
    try:
        mhz = float(info["cpu MHz"])
    except (KeyError, ValueError):
        mhz = None
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return Hardware(
        arch=platform.machine().lower(),
        cpu=info.get("model name") or platform.processor() or platform.machine(),
        cores=usable_cores(),
        mhz=mhz,
        avx2=_probe("avx2"),
        avx512=_probe("avx512"),
        vnni=_probe("vnni"),
        avx512_bf16=_probe("avx512_bf16"),
        amx=_probe("amx_tile"),
        gpus=gpus,
    )
