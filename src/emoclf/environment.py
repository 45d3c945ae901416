"""What reproducing a run needs besides its config: package versions, the project's commit, the hardware."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from emoclf import hardware

PACKAGES = ("emoclf", "torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors",
            "scikit-learn", "numpy", "pandas", "mlflow")


def run_environment() -> dict:
    """Versions of the packages that shape results, the git commit (and whether the tree was dirty), the hardware."""
    import torch

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {
        "python": platform.python_version(),
        "packages": {name: version(name) for name in PACKAGES},
        "git": {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None},
        "hardware": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                     **hardware.detect().to_dict()},
    }
