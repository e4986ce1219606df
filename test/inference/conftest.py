"""Fixtures for the model tests: the tiny config and a randomly initialised tiny model."""
from pathlib import Path

import pytest
import torch

from cosmos_policy_ros.model.config import load_model_config
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "model"


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_model_config(CONFIG_DIR / "tiny_test.yaml")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return CosmosPolicyModel.build(tiny_cfg, "cpu", seed=0)
