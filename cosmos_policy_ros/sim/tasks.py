"""Tasks: seeded object placement and the staged reward 0..4 (success = 4), as gym-aloha / ACT define them.

transfer-cube: 1 right gripper touches the cube, 2 right gripper lifts it (cube off the table),
  3 left gripper touches it (transfer attempted), 4 left gripper holds it off the table.
insertion: 1 both grippers touch their object (right: peg, left: socket), 2 both lifted off the table,
  3 peg touches the socket while both are off the table, 4 peg touches the pin inside the socket.
Contacts are checked as unordered geom pairs on the current MjData (after mj_forward).
"""
from __future__ import annotations

import mujoco
import numpy as np

from cosmos_policy_ros.sim.world_config import TaskConfig

MAX_STAGE = 4
TASKS = ("transfer_cube", "insertion")


class Task:
    """Object sampling and staged reward of one task on one compiled model."""

    name = ""

    def __init__(self, model: mujoco.MjModel, tc: TaskConfig, arm_prefix: dict[str, str]):
        self.model = model
        self.config = tc
        self.prefix = arm_prefix
        self.object_qposadr = {}
        for obj, rng in tc.objects.items():
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, rng.joint)
            if jid < 0 or model.jnt_type[jid] != mujoco.mjtJoint.mjJNT_FREE:
                raise ValueError(f"task {self.name}: {rng.joint!r} is not a free joint of the model")
            self.object_qposadr[obj] = int(model.jnt_qposadr[jid])

    def _geom(self, name: str) -> int:
        gid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if gid < 0:
            raise ValueError(f"task {self.name}: geom {name!r} is not in the model")
        return gid

    def _finger(self, side: str, finger: str) -> int:
        return self._geom(f"{self.prefix[side]}/10_{finger}_gripper_finger")

    def sample_object_poses(self, seed: int) -> dict[str, np.ndarray]:
        """Object poses (x y z qw qx qy qz) drawn like gym-aloha's samplers for the same seed."""
        rng = np.random.RandomState(seed)
        poses = {}
        for obj, r in self.config.objects.items():
            lo = np.array([r.x[0], r.y[0], r.z[0]])
            hi = np.array([r.x[1], r.y[1], r.z[1]])
            poses[obj] = np.concatenate([rng.uniform(lo, hi), [1.0, 0.0, 0.0, 0.0]])
        return poses

    def set_object_poses(self, data: mujoco.MjData, poses: dict[str, np.ndarray]) -> None:
        for obj, pose in poses.items():
            adr = self.object_qposadr[obj]
            data.qpos[adr:adr + 7] = pose

    def object_poses(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        return {obj: data.qpos[adr:adr + 7].copy() for obj, adr in self.object_qposadr.items()}

    @staticmethod
    def contact_pairs(data: mujoco.MjData) -> set[tuple[int, int]]:
        n = data.ncon
        if n == 0:
            return set()
        g1 = data.contact.geom1[:n]
        g2 = data.contact.geom2[:n]
        return {(int(min(a, b)), int(max(a, b))) for a, b in zip(g1, g2)}

    @staticmethod
    def _touch(pairs, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in pairs

    def _touch_any(self, pairs, group_a, group_b) -> bool:
        return any(self._touch(pairs, a, b) for a in group_a for b in group_b)

    def stage(self, data: mujoco.MjData) -> int:
        raise NotImplementedError


class TransferCube(Task):
    name = "transfer_cube"

    def __init__(self, model, tc, arm_prefix):
        super().__init__(model, tc, arm_prefix)
        self.box = self._geom("red_box")
        self.table = self._geom("table")
        self.left_finger = self._finger("left", "left")
        self.right_finger = self._finger("right", "right")

    def stage(self, data):
        pairs = self.contact_pairs(data)
        touch_left = self._touch(pairs, self.box, self.left_finger)
        touch_right = self._touch(pairs, self.box, self.right_finger)
        on_table = self._touch(pairs, self.box, self.table)
        stage = 0
        if touch_right:
            stage = 1
        if touch_right and not on_table:
            stage = 2
        if touch_left:
            stage = 3
        if touch_left and not on_table:
            stage = 4
        return stage


class Insertion(Task):
    name = "insertion"

    def __init__(self, model, tc, arm_prefix):
        super().__init__(model, tc, arm_prefix)
        self.peg = self._geom("red_peg")
        self.pin = self._geom("pin")
        self.table = self._geom("table")
        self.socket = [self._geom(f"socket-{i}") for i in range(1, 5)]
        self.left_finger = self._finger("left", "left")
        self.right_finger = self._finger("right", "right")

    def stage(self, data):
        pairs = self.contact_pairs(data)
        touch_right = self._touch(pairs, self.peg, self.right_finger)
        touch_left = self._touch_any(pairs, self.socket, [self.left_finger])
        peg_on_table = self._touch(pairs, self.peg, self.table)
        socket_on_table = self._touch_any(pairs, self.socket, [self.table])
        peg_socket = self._touch_any(pairs, self.socket, [self.peg])
        stage = 0
        if touch_left and touch_right:
            stage = 1
        if touch_left and touch_right and not peg_on_table and not socket_on_table:
            stage = 2
        if peg_socket and not peg_on_table and not socket_on_table:
            stage = 3
        if self._touch(pairs, self.peg, self.pin):
            stage = 4
        return stage


def make_task(name: str, model: mujoco.MjModel, tc: TaskConfig, arm_prefix: dict[str, str]) -> Task:
    classes = {"transfer_cube": TransferCube, "insertion": Insertion}
    if name not in classes:
        raise ValueError(f"unknown task {name!r}; known: {sorted(classes)}")
    return classes[name](model, tc, arm_prefix)
