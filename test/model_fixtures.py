"""Fixtures shared by the model, inference and training tests (registered in test/conftest.py):
the tiny config, a randomly initialised tiny model, one torch thread per test."""
from pathlib import Path

import pytest
import torch

from cosmos_policy_ros.model.config import load_model_config
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "model"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors gain nothing from 2 threads, and OpenMP spin-waits badly when the 2-core test
    machine is shared (measured ~7x slower wall time under load); restore afterwards."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_model_config(CONFIG_DIR / "tiny_test.yaml")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return CosmosPolicyModel.build(tiny_cfg, "cpu", seed=0)
