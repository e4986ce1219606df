"""bench/bench_model.py refuses, in one line and at once, a run that would take hours or cannot start."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_model.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the bench would run")
@pytest.mark.parametrize("args,needle", [
    (["--device", "cuda"], "sees no CUDA GPU"),
    ([], "on a CPU would take about an hour per chunk"),       # no --device, no GPU: the CPU is refused too
    (["--device", "cpu"], "on a CPU would take about an hour per chunk"),
])
def test_the_2b_bench_without_a_gpu_refuses_in_one_line(args, needle):
    run = subprocess.run([sys.executable, str(BENCH), "--config", "cosmos_policy_2b_aloha", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert needle in line and "GPU" in line
