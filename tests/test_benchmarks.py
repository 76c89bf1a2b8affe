"""The benchmark scripts' command lines: bad options are refused with a clear message.

(Their measurements are not tested here: timings belong to `make bench`, not to unit tests.)
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("option", ["--images", "--test-images", "--seeds", "--epochs", "--rounds"])
def test_train_speed_refuses_counts_below_one(option):
    result = subprocess.run([sys.executable, "benchmarks/train_speed.py", option, "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{option} must be a positive integer" in result.stderr
