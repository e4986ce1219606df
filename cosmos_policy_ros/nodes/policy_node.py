"""Policy node: cameras + joint states in, Cosmos Policy action chunks out (direct deployment).

Parameters: checkpoint (bundle folder, upstream's released folder as downloaded, or a weights file; "" = the
bundled small checkpoint), model_config / stats / t5_embeddings / tokenizer (files that live elsewhere than
the checkpoint's folder; deploy/bundle.py), instruction ("" = the checkpoint's), robot_config,
camera_config, config (config/policy.yaml), trigger (overrides the yaml when set). Topics: topics.ACTION_CHUNK,
POLICY_VALUE, POLICY_STATUS out, CHUNK_REQUEST in (nodes/observing.py).
"""
from __future__ import annotations

import sys

from cosmos_policy_ros.msg import ActionChunk
from cosmos_policy_ros.nodes.chunk_msgs import fill_action_chunk
from cosmos_policy_ros.nodes.common import run_node
from cosmos_policy_ros.nodes.observing import ObservingNode


class PolicyNode(ObservingNode):
    def __init__(self):
        super().__init__("policy")

    def compute(self, obs: dict, seed: int):
        steps = self.pcfg.steps or None
        out = self.engine.act(obs, seed=seed, steps=steps)
        n_steps = steps or self.engine.cfg.sampler.action_steps
        msg = fill_action_chunk(ActionChunk(), out.actions, self.robot.joint_names,
                                ActionChunk().header.stamp, self.period_s, value=out.value, source="policy",
                                model_name=self.bundle.model_name, checkpoint_id=self.bundle.checkpoint_id,
                                instruction=self.instruction, num_steps=n_steps)
        return msg, out.value


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args, name="policy")


if __name__ == "__main__":
    sys.exit(main())
