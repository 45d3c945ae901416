"""What reproducing a run needs besides its config: package versions, the project's commit, the hardware."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from emoclf import hardware
from emoclf.layout import CONFIG_FILE, ENVIRONMENT_FILE

PACKAGES = (
    "emoclf",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "scikit-learn",
    "numpy",
    "pandas",
    "mlflow",
)


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
        "git": {
            "commit": commit,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        },
        "hardware": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            **hardware.detect().to_dict(),
        },
    }


def record_run(cfg, out: Path, tracker) -> None:
    """The run's own files (config, environment) beside its results, and in its tracking run."""
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_yaml(out / CONFIG_FILE)
    environment = run_environment()
    (out / ENVIRONMENT_FILE).write_text(json.dumps(environment, indent=2))
    tracker.log_dict(environment, ENVIRONMENT_FILE)
    tracker.set_tags(
        {
            "emoclf.git_commit": str(environment["git"]["commit"]),
            "emoclf.git_dirty": str(environment["git"]["dirty"]),
            "emoclf.hardware": hardware.detect().describe(),
        }
    )
