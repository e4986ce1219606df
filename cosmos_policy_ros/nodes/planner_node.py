"""Planner node: best-of-N planning with world-model and value ensembles (dual deployment).

The policy checkpoint proposes N chunks; the planning checkpoint predicts K futures per candidate
and M values per future, each stage one batched sampler call (inference/planning.py). Publishes
the chosen chunk on topics.ACTION_CHUNK (source "planner"), the full PlanResult (PLAN_RESULT), the
scores (PLAN_SCORES, plot-friendly) and the chosen joint trajectory (PLAN_CHOSEN_TRAJECTORY). When
planning misses ``deadline_s`` it publishes the direct policy chunk instead (fell_back_to_direct)
and does not start another plan until the late one has finished.

Parameters: as the policy node, plus planning_checkpoint ("" = the bundled planning model when the
policy is the bundled one, else the policy checkpoint itself; a released planning folder takes the
statistics, T5 file, tokenizer and model config it lacks from the policy's) and planner_config
(config/planner.yaml). The policy checkpoint parameter is ``policy_checkpoint``.
"""
from __future__ import annotations

import sys
import threading
import time

from std_msgs.msg import Float32MultiArray
from trajectory_msgs.msg import JointTrajectory

from cosmos_policy_ros import topics
from cosmos_policy_ros.deploy.bundle import build_engine, default_planning_checkpoint, resolve_bundle
from cosmos_policy_ros.deploy.planner_config import DEFAULT_PLANNER_CONFIG, load_planner_config
from cosmos_policy_ros.msg import ActionChunk, PlanResult
from cosmos_policy_ros.nodes.chunk_msgs import fill_action_chunk
from cosmos_policy_ros.nodes.common import declare, run_node
from cosmos_policy_ros.nodes.observing import ObservingNode


class PlannerNode(ObservingNode):
    def __init__(self):
        self._plan_busy = threading.Lock()
        super().__init__("planner", checkpoint_param="policy_checkpoint")

    def load_engine(self):
        self.plan_cfg = load_planner_config(declare(self, "planner_config", DEFAULT_PLANNER_CONFIG))
        # publishers exist before the worker thread starts
        self.plan_pub = self.create_publisher(PlanResult, topics.PLAN_RESULT, 10)
        self.scores_pub = self.create_publisher(Float32MultiArray, topics.PLAN_SCORES, 10)
        self.traj_pub = self.create_publisher(JointTrajectory, topics.PLAN_CHOSEN_TRAJECTORY, 10)
        planning_ckpt = declare(self, "planning_checkpoint", "")
        if not planning_ckpt and not self.get_parameter("policy_checkpoint").value \
                and default_planning_checkpoint().is_dir():   # the bundled policy has a bundled planning model
            planning_ckpt = str(default_planning_checkpoint())
        # a released planning folder (or bare weights file) takes what it lacks from the policy's bundle:
        # model config, statistics, T5 file, tokenizer; explicit file parameters apply to both
        shared = [self.get_parameter(n).value for n in ("model_config", "stats", "t5_embeddings", "tokenizer")]
        planning = resolve_bundle(planning_ckpt, *shared, fallback=self.bundle) if planning_ckpt else None
        if planning is not None and planning.weights != self.bundle.weights:
            self.check_bundle(planning)
        self.planning_id = planning.checkpoint_id if planning else self.bundle.checkpoint_id
        return build_engine(self.bundle, planning, device=self.pcfg.device or None)

    def warmup(self) -> None:  # one direct inference: planning warm-up would cost N*K*M passes
        t0 = time.perf_counter()
        self.engine.act(self.warmup_observation(), seed=0)
        self.get_logger().info(f"warm-up inference {time.perf_counter() - t0:.2f} s")

    def _direct(self, obs: dict, seed: int):
        out = self.engine.act(obs, seed=seed)
        return out.actions, out.value

    def compute(self, obs: dict, seed: int):
        from cosmos_policy_ros.inference.planning import plan

        pc = self.plan_cfg.plan_config()
        result: dict = {}
        started = time.perf_counter()
        fell_back = False
        if self._plan_busy.acquire(blocking=False):
            def run():
                try:
                    result["plan"] = plan(self.engine, obs, pc)
                except Exception as exc:  # noqa: BLE001 - reported below
                    result["error"] = exc
                finally:
                    self._plan_busy.release()

            th = threading.Thread(target=run, name="plan", daemon=True)
            th.start()
            th.join(self.plan_cfg.deadline_s)
            if "error" in result:
                raise result["error"]
            fell_back = "plan" not in result
        else:
            fell_back = True  # a late plan is still running
        msg = PlanResult()
        n, k, m = pc.num_candidates, len(pc.world_steps), len(pc.value_steps)
        msg.num_candidates, msg.num_futures, msg.num_values, msg.value_mode = n, k, m, pc.value_mode
        if fell_back:
            self.get_logger().warning(f"planning exceeded {self.plan_cfg.deadline_s:.1f} s: "
                                      "executing the direct policy chunk")
            actions, value = self._direct(obs, pc.base_seed)
            msg.fell_back_to_direct = True
        else:
            r = result["plan"]
            actions, value = r.actions, float(r.scores[r.best])
            msg.candidate_scores = [float(s) for s in r.scores]
            msg.raw_values = [float(v) for v in r.values.reshape(-1)]
            msg.chosen_index = int(r.best)
            msg.proposal_latency_s = float(r.timings["actions_s"] + r.timings["encode_s"])
            msg.world_model_latency_s = float(r.timings["world_s"])
            msg.value_latency_s = float(r.timings["value_s"])
        msg.total_latency_s = float(time.perf_counter() - started)
        chunk = fill_action_chunk(ActionChunk(), actions, self.robot.joint_names, ActionChunk().header.stamp,
                                  self.period_s, value=value, source="planner", model_name=self.bundle.model_name,
                                  checkpoint_id=f"{self.bundle.checkpoint_id}+{self.planning_id}",
                                  instruction=self.instruction,
                                  num_steps=pc.action_steps or self.engine.cfg.sampler.action_steps)
        self._pending_plan = msg
        return chunk, value

    def _publish_extras(self, chunk) -> None:
        msg = getattr(self, "_pending_plan", None)
        if msg is None:
            return
        msg.header = chunk.header
        msg.sequence = chunk.sequence
        msg.chosen = chunk
        self.plan_pub.publish(msg)
        self.scores_pub.publish(Float32MultiArray(data=list(msg.candidate_scores)))
        self.traj_pub.publish(chunk.trajectory)


def main(args: list[str] | None = None) -> int:
    return run_node(PlannerNode, args, name="planner")


if __name__ == "__main__":
    sys.exit(main())
