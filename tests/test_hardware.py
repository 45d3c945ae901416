"""The hardware probe: instruction sets as the process sees them, and the choices made from them."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emoclf import hardware
from emoclf.export import int8_settings
from emoclf.trainer import resolve_precision

QEMU = shutil.which("qemu-x86_64")
X86 = platform.machine().lower() in ("x86_64", "amd64")

AVX2_ONLY = hardware.Hardware(
    arch="x86_64",
    cpu="AMD EPYC 7B13",
    cores=2,
    mhz=2450.0,
    avx2=True,
    avx512=False,
    vnni=False,
    avx512_bf16=False,
    amx=False,
    gpus=(),
)
SAPPHIRE_RAPIDS = dataclasses.replace(
    AVX2_ONLY, cpu="Intel(R) Xeon(R) Platinum 8481C", avx512=True, vnni=True, avx512_bf16=True, amx=True
)
ARM = dataclasses.replace(AVX2_ONLY, arch="aarch64", cpu="Neoverse-V1", avx2=False)


def test_choices_follow_the_instruction_sets():
    assert AVX2_ONLY.isa == ["AVX2"] and not AVX2_ONLY.bf16_fast and not AVX2_ONLY.int8_full_range_exact
    assert SAPPHIRE_RAPIDS.isa == ["AVX2", "AVX-512", "AVX512-VNNI", "AVX512-BF16", "AMX"]
    assert SAPPHIRE_RAPIDS.bf16_fast and SAPPHIRE_RAPIDS.int8_full_range_exact
    # AVX-512 without VNNI (Skylake-X) still multiplies int8 pairs into int16.
    skylake = dataclasses.replace(AVX2_ONLY, avx512=True)
    assert not skylake.int8_full_range_exact and not skylake.bf16_fast
    # AVX512-BF16 without AMX trains slower in bf16 than in fp32 (measured, docs/training-speed.md): fp32 stays.
    assert not dataclasses.replace(AVX2_ONLY, avx512=True, vnni=True, avx512_bf16=True).bf16_fast
    assert ARM.int8_full_range_exact and not ARM.x86
    assert AVX2_ONLY.describe() == "AMD EPYC 7B13 (x86_64, 2 cores, AVX2)"
    assert (
        dataclasses.replace(ARM, gpus=("NVIDIA H100",)).describe()
        == "Neoverse-V1 (aarch64, 2 cores, no AVX2), GPU NVIDIA H100"
    )


def test_int8_weights_are_7_bit_without_vnni_and_8_bit_with_it():
    avx2 = int8_settings(AVX2_ONLY)
    assert (avx2["weight_bits"], avx2["reduce_range"], avx2["chosen"], avx2["exact_on"]) == (
        7,
        True,
        "auto",
        "every CPU",
    )
    assert avx2["exported_on"] == AVX2_ONLY.describe()
    vnni = int8_settings(SAPPHIRE_RAPIDS)
    assert (vnni["weight_bits"], vnni["reduce_range"], vnni["chosen"]) == (8, False, "auto")
    assert vnni["exact_on"] == "x86 CPUs with VNNI or AMX, and ARM"
    assert int8_settings(SAPPHIRE_RAPIDS, portable=True)["weight_bits"] == 7
    assert int8_settings(AVX2_ONLY, portable=False)["chosen"] == "--no-portable"


def test_detect_agrees_with_the_kernel_and_feeds_precision_auto():
    hw = hardware.detect()
    assert hw is hardware.detect()  # probed once
    assert hw.cores == len(os.sched_getaffinity(0)) and hw.cores >= 1
    assert hw.arch == platform.machine().lower()
    if X86 and Path("/proc/cpuinfo").is_file():
        flags = set(
            next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
            .split(":")[1]
            .split()
        )
        assert hw.avx2 == ("avx2" in flags)
        assert hw.vnni == ("avx512_vnni" in flags)
        assert hw.avx512_bf16 == ("avx512_bf16" in flags)
        assert hw.amx == ("amx_tile" in flags)
    expected = "bf16" if hw.bf16_fast else "fp32"
    assert resolve_precision("auto") == expected and resolve_precision("fp32") == "fp32"
    assert json.loads(json.dumps(hw.to_dict()))["isa"] == hw.isa


@pytest.mark.slow
@pytest.mark.skipif(not (QEMU and X86), reason="needs qemu-x86_64 (apt-get install qemu-user) on an x86 machine")
def test_an_emulated_avx2_cpu_is_seen_as_one():
    """The probe reads CPUID, so an emulated Haswell (AVX2, no AVX-512, no VNNI) is seen as such:
    what the emulation tests in test_export rely on."""
    code = "import json; from emoclf import hardware; print(json.dumps(hardware.detect().to_dict()))"
    proc = subprocess.run(
        [QEMU, "-cpu", "Haswell", sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout)
    assert seen["isa"] == ["AVX2"] and seen["int8_full_range_exact"] is False and seen["bf16_fast"] is False


def test_peaks_count_each_cpus_instructions_and_say_so():
    avx2, spr = AVX2_ONLY.peak(), SAPPHIRE_RAPIDS.peak(1)
    # 2 cores x 2.45 GHz x (fp32: 2 FMA units x 8 lanes x 2 = 32; int8 without VNNI: 32 multiply-adds a cycle x 2).
    assert (avx2["cores"], avx2["fp32_peak_gops"], avx2["int8_peak_gops"]) == (2, 156.8, 313.6)
    assert avx2["bf16_peak_gops"] == avx2["fp32_peak_gops"]  # no bf16 instructions: fp32 speed at best
    assert "int8: no VNNI: VPMADDUBSW then VPMADDWD (AVX2)" in avx2["assumptions"]
    assert (spr["cores"], spr["int8_ops_per_cycle"], spr["bf16_ops_per_cycle"]) == (1, 2048, 1024)
    assert "AMX TDPBUSD" in spr["assumptions"] and "vCPUs counted as cores" in spr["assumptions"]
    vnni = dataclasses.replace(SAPPHIRE_RAPIDS, amx=False).ops_per_cycle()
    assert (vnni["fp32"][0], vnni["int8"][0]) == (64, 256)
    assert AVX2_ONLY.peak(8)["cores"] == 2  # never more than the cores this process may use


def test_threads_sleep_while_they_wait_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    hardware.configure_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    hardware.configure_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
