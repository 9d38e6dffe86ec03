"""A training step reuses freed memory instead of page-faulting its activations in again."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

STEPS = """
import resource, sys, torch
torch.set_num_threads(1)
from looplm.data.batching import StreamBatches
from looplm.learner import Learner
from looplm.models import build_model
from looplm.optim import default_adam, param_groups
from looplm.state import detach_state
torch.manual_seed(0)
model = build_model("lm7", 30)
if sys.argv[1] == "learner":
    stream = torch.randint(0, 30, (64, 33))
    data = StreamBatches(stream[:, :-1], stream[:, 1:], 16, "every")
    Learner(model, data, data, log=None, progress=False)
opt = default_adam(param_groups(model, 0.1), 1e-3, 0.1)
tokens, state = torch.randint(0, 30, (64, 17)), None
def step():
    global state
    logits, new = model(tokens[:, :-1], state)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 30), tokens[:, 1:].reshape(-1)).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    state = detach_state(new)
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_step(mode: str) -> float:
    """Minor page faults per training step of the chapter's lm7 (bs 64, sl 16) in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.split()[-1])


def test_once_a_learner_is_made_a_training_step_takes_few_page_faults():
    # measured here: 0-30 a step; with glibc's defaults 200-1,500 (every activation mapped
    # and faulted in again each step), though a lucky heap layout can show fewer
    assert faults_per_step("learner") < 100


def test_malloc_settings_of_the_user_are_left_alone():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "131072"}
    code = "from looplm.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
