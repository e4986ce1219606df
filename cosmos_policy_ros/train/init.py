"""Initialisation for training a DiT from scratch (adapter: the model package's init_weights is a
test init that leaves AdaLN gates and the output layer random).

adaLN-zero (DiT, Peebles & Xie 2023): the last linear of every AdaLN modulation head, the shared
AdaLN-LoRA projection and the final output linear start at zero, so every block starts as the
identity and x0_hat starts at c_skip * x_sigma. Measured here: with the random gates the action
read-back error after 2,600 steps was still worse than predicting the dataset-mean chunk.
"""
from __future__ import annotations

import torch

from cosmos_policy_ros.model.dit import CosmosDiT


@torch.no_grad()
def init_for_training(net: CosmosDiT, generator: torch.Generator | None = None) -> None:
    net.init_weights(generator=generator)
    for block in net.blocks:
        for head in (block.adaln_modulation_self_attn, block.adaln_modulation_cross_attn, block.adaln_modulation_mlp):
            head[-1].weight.zero_()
    net.final_layer.adaln_modulation[-1].weight.zero_()
    net.final_layer.linear.weight.zero_()
    net.t_embedder[1].linear_2.weight.zero_()
