"""bnlib.allocator: a training step stops faulting its memory in again, and computes the same.

Each case runs in a fresh interpreter, with and without :func:`keep_freed_memory`, since the
allocator's settings are per process and cannot be undone."""

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the settings are glibc's",
)

SETUP = """
import sys
import torch
from torch import nn
from bnlib import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_freed_memory()
torch.set_num_threads(1)
"""

#: Page faults per training step of the article's network with BN (batch 32, channels-last).
FAULTS_PER_STEP = SETUP + """
import resource
from bnlib.models import three_conv_net
torch.manual_seed(0)
model = three_conv_net(True).to(memory_format=torch.channels_last)
x = torch.rand(32, 1, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (32,))
def step():
    nn.functional.cross_entropy(model(x), y).backward()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""

#: A short run's history, without its timings.
HISTORY = SETUP + """
import json
from bnlib.models import ARTICLE_TRACKED_WEIGHTS
from bnlib.training import RunConfig, train
config = RunConfig(model_kwargs={"batch_norm": True}, epochs=2, batch_size=32,
                   train_subset=96, test_subset=100, track_weights=ARTICLE_TRACKED_WEIGHTS)
rows = train(config, progress=False).rows()
print(json.dumps([{k: v for k, v in row.items() if k != "seconds"} for row in rows]))
"""


def run(script: str, mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                          check=True, timeout=300)
    return done.stdout.strip()


def test_a_training_step_no_longer_faults_its_activations_in_again():
    default, kept = (float(run(FAULTS_PER_STEP, mode)) for mode in ("default", "keep"))
    # By default each step re-faults megabytes of activations (about 3,000 pages here); kept,
    # a few dozen. A tenth leaves a wide margin on either side.
    assert kept < default / 10, (default, kept)


def test_a_run_computes_the_same_history_bit_for_bit():
    assert json.loads(run(HISTORY, "keep")) == json.loads(run(HISTORY, "default"))
