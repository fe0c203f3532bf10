import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m fedcluster ARGS`` in a subprocess and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fedcluster", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def cli():
    return run_cli
