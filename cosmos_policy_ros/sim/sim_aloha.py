"""SimAloha: the simulated bimanual ALOHA behind an interface shaped like the real robot's driver.

The ROS sim node is meant to be a thin wrapper: JointGroupCommand -> apply_arm_command (6 rad),
JointSingleCommand 'gripper' -> apply_gripper_command (follower gripper motor rad), a timer ->
step(), joint_state(side) -> sensor_msgs/JointState in the xs_sdk layout, render() -> Images.
In-process users (demo generation, tests) use the 14-D policy space directly: step(action14).
Bad commands raise ValueError with one line and leave the simulation untouched, so a node can log
and keep running. All public methods hold one lock, so callbacks from several threads are safe.
A node that must keep stepping while it renders (rendering takes tens of ms on a CPU) copies the
state under the lock (snapshot) and renders the copy without it (render_snapshot, one thread only).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from cosmos_policy_ros.robot.aloha import DEFAULT_ROBOT_CONFIG, AlohaRobot
from cosmos_policy_ros.sim import world as world_mod
from cosmos_policy_ros.sim.gripper import SimGripperUnits
from cosmos_policy_ros.sim.render import CameraRenderer
from cosmos_policy_ros.sim.tasks import MAX_STAGE, TASKS, make_task
from cosmos_policy_ros.sim.world_config import (
    DEFAULT_TASKS_CONFIG,
    DEFAULT_WORLD_CONFIG,
    SIDES,
    load_tasks_config,
    load_world_config,
)

mujoco = world_mod.mujoco


@dataclass
class JointStateSample:
    """One xs_sdk-style joint_states reading: 6 arm joints, gripper (rad), left/right finger (m)."""

    name: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass(frozen=True)
class SimSnapshot:
    """The state that decides what the cameras see, copied under the lock (``SimAloha.snapshot``)."""

    task: str
    time: float
    qpos: np.ndarray
    qvel: np.ndarray
    act: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray


@dataclass
class SimState:
    time: float          # simulated seconds since reset
    step: int            # control steps since reset
    qpos: np.ndarray     # 14-D policy-space state (grippers 0..1 from finger position)
    qvel: np.ndarray     # 14-D (grippers in normalised units per second)
    stage: int           # current staged reward 0..4
    max_stage: int       # highest stage reached this episode


def _side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return side


def _vector(x, n: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(x, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected {n} finite numbers, got {x!r}") from None
    if v.size != n:
        raise ValueError(f"{what}: expected {n} numbers, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what}: contains NaN or inf: {v.tolist()}")
    return v


class SimAloha:
    """A MuJoCo ALOHA with tasks, cameras and driver-like joint states. Not thread-affine; lock-protected."""

    def __init__(
        self,
        task: str = "transfer_cube",
        *,
        robot: AlohaRobot | None = None,
        robot_config: str = DEFAULT_ROBOT_CONFIG,
        world_config: str = DEFAULT_WORLD_CONFIG,
        tasks_config: str = DEFAULT_TASKS_CONFIG,
        width: int | None = None,
        height: int | None = None,
    ):
        self.wc = load_world_config(world_config)
        self.tasks_cfg = load_tasks_config(tasks_config)
        self.robot = robot or AlohaRobot.from_yaml(robot_config)
        self.width = int(width or self.wc.render.width)
        self.height = int(height or self.wc.render.height)
        self.gripper_units = SimGripperUnits(self.robot, self.wc.gripper)
        self.dt = self.wc.control_dt
        self.cameras = tuple(self.wc.cameras)
        self._lock = threading.RLock()
        self._worlds: dict[str, tuple] = {}
        self._scratch: dict[str, mujoco.MjData] = {}  # per task: the state render_snapshot draws
        self._actuation: dict[str, tuple] = {}  # per task: the model's own gains and friction (torque on)
        self._torque = {side: np.ones(7, dtype=bool) for side in SIDES}
        self.task_name = ""
        self.seed: int | None = None
        self._load(task)
        self.reset(task)

    # ---- model and episode --------------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def _load(self, task: str) -> None:
        if task not in self.tasks_cfg:
            raise ValueError(f"unknown task {task!r}; known: {sorted(self.tasks_cfg)}")
        if task not in self._worlds:
            model = world_mod.build_model(task, self.wc, self.width, self.height)
            data = mujoco.MjData(model)
            self._worlds[task] = (model, data, make_task(task, model, self.tasks_cfg[task], self.wc.arm_prefix),
                                  CameraRenderer(model, self.wc.render))
        self.model, self.data, self.task, self.renderer = self._worlds[task]
        self.task_name = task
        self._index_model()
        if task not in self._actuation:
            m = self.model
            self._actuation[task] = (m.actuator_gainprm.copy(), m.actuator_biasprm.copy(), m.dof_frictionloss.copy())
        self._apply_torque()

    def _index_model(self) -> None:
        m = self.model

        def jid(name):
            j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
            if j < 0:
                raise ValueError(f"joint {name!r} is not in the model")
            return j

        act_of_joint = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        self._arm_qadr, self._arm_dadr, self._arm_act = {}, {}, {}
        self._finger_qadr, self._finger_dadr, self._finger_act = {}, {}, {}
        for side in SIDES:
            p = self.wc.arm_prefix[side]
            joints = [jid(f"{p}/{j}") for j in self.robot.config.arm_joints]
            self._arm_qadr[side] = np.array([m.jnt_qposadr[j] for j in joints])
            self._arm_dadr[side] = np.array([m.jnt_dofadr[j] for j in joints])
            self._arm_act[side] = np.array([act_of_joint[j] for j in joints])
            fingers = [jid(f"{p}/{f}") for f in self.robot.config.finger_joints]
            self._finger_qadr[side] = np.array([m.jnt_qposadr[j] for j in fingers])
            self._finger_dadr[side] = np.array([m.jnt_dofadr[j] for j in fingers])
            self._finger_act[side] = np.array([act_of_joint[j] for j in fingers])
        lo = self.robot.arm_lower
        hi = self.robot.arm_upper
        self._arm_lo, self._arm_hi = lo, hi

    def reset(self, task: str | None = None, seed: int | None = None) -> SimState:
        """Start an episode: arms at the robot's start pose, objects placed from ``seed``.

        seed=None draws a fresh seed (readable afterwards as ``self.seed``) so every episode can be replayed.
        """
        with self._lock:
            if task is not None and task != self.task_name:
                self._load(task)
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
                raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
            self.seed = int(seed)
            m, d = self.model, self.data
            mujoco.mj_resetData(m, d)
            start = np.asarray(self.robot.config.poses.start, dtype=float)
            f0 = self.wc.gripper.reset_finger
            for side in SIDES:
                d.qpos[self._arm_qadr[side]] = start
                d.ctrl[self._arm_act[side]] = start
                d.qpos[self._finger_qadr[side]] = [f0, -f0]
                d.ctrl[self._finger_act[side]] = [f0, -f0]
            self.task.set_object_poses(d, self.task.sample_object_poses(self.seed))
            mujoco.mj_forward(m, d)
            self.step_count = 0
            self._stage = self.task.stage(d)
            self.max_stage = self._stage
            return self._state()

    # ---- commands -----------------------------------------------------------------------
    def apply_arm_command(self, side: str, positions) -> None:
        """JointGroupCommand 'arm': 6 joint targets (rad), clipped to the joint limits like the motors do."""
        side = _side(side)
        q = _vector(positions, 6, f"arm command for {side}")
        with self._lock:
            self.data.ctrl[self._arm_act[side]] = np.clip(q, self._arm_lo, self._arm_hi)

    def apply_gripper_command(self, side: str, rad) -> None:
        """JointSingleCommand 'gripper': follower gripper motor angle (rad, robot config units)."""
        side = _side(side)
        r = _vector(rad, 1, f"gripper command for {side}")[0]
        self._set_finger_target(side, float(self.gripper_units.command_rad_to_finger(r)))

    def apply_gripper_normalized(self, side: str, x) -> None:
        """Gripper target in the policy space: 0 closed .. 1 open."""
        side = _side(side)
        v = _vector(x, 1, f"gripper command for {side}")[0]
        self._set_finger_target(side, float(self.gripper_units.normalized_to_finger(v)))

    def _set_finger_target(self, side: str, finger: float) -> None:
        with self._lock:
            self.data.ctrl[self._finger_act[side]] = [finger, -finger]  # actuator ctrlrange clips

    def gripper_motor_range(self) -> tuple[float, float]:
        """The follower gripper motor angles (rad) the simulated fingers can reach: their slide's range."""
        lo, hi = self.model.jnt_range[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT,
                                                        f"{self.wc.arm_prefix['left']}/"
                                                        f"{self.robot.config.finger_joints[0]}")]
        a, b = (float(self.gripper_units.finger_to_command_rad(x)) for x in (lo, hi))
        return min(a, b), max(a, b)

    def set_torque(self, side: str, enabled) -> None:
        """Motor torque per joint (6 arm joints, gripper), as the driver's torque_enable leaves it.

        A joint without torque is passive: its actuator exerts no force and its friction drops to
        physics.torque_off_friction, so an arm without torque sags under gravity (a real one falls).
        """
        side = _side(side)
        mask = np.asarray(enabled, dtype=bool).reshape(-1)
        if mask.shape != (7,):
            raise ValueError(f"torque mask for {side}: expected 7 values, got {mask.size}")
        with self._lock:
            if not np.array_equal(mask, self._torque[side]):
                self._torque[side] = mask.copy()
                self._apply_torque()

    def _apply_torque(self) -> None:
        m = self.model
        gain, bias, friction = self._actuation[self.task_name]
        for side in SIDES:
            joints = [([a], [d]) for a, d in zip(self._arm_act[side], self._arm_dadr[side])]
            joints.append((list(self._finger_act[side]), list(self._finger_dadr[side])))
            for on, (acts, dofs) in zip(self._torque[side], joints):
                m.actuator_gainprm[acts] = gain[acts] if on else 0.0
                m.actuator_biasprm[acts] = bias[acts] if on else 0.0
                m.dof_frictionloss[dofs] = friction[dofs] if on else self.wc.physics.torque_off_friction

    def apply_action(self, action14) -> None:
        """14-D policy action [left 6 rad, left gripper 0..1, right 6 rad, right gripper 0..1]."""
        a = _vector(action14, 14, "action")
        with self._lock:
            for i, side in enumerate(SIDES):
                self.apply_arm_command(side, a[7 * i:7 * i + 6])
                self.apply_gripper_normalized(side, a[7 * i + 6])

    def apply_driver_command(self, command14) -> None:
        """A 14-D command as the robot's driver takes it (AlohaRobot.driver_targets: float32 arm targets, the
        gripper as a float32 motor angle): what the sim node applies when the executor streams the command."""
        with self._lock:
            for side, (arm, gripper_rad) in zip(SIDES, self.robot.driver_targets(command14)):
                self.apply_arm_command(side, arm)
                self.apply_gripper_command(side, gripper_rad)

    def step(self, action14=None, driver: bool = False) -> SimState:
        """Advance one control period (substeps x timestep) holding the current targets; `action14` first
        (driver: through apply_driver_command, as a commanded robot, else apply_action)."""
        with self._lock:
            if action14 is not None:
                (self.apply_driver_command if driver else self.apply_action)(action14)
            m, d = self.model, self.data
            mujoco.mj_step(m, d, nstep=self.wc.physics.substeps)  # one call: one GIL hand-over, not ten
            mujoco.mj_forward(m, d)  # contacts and camera poses for the state we report
            self.step_count += 1
            self._stage = self.task.stage(d)
            self.max_stage = max(self.max_stage, self._stage)
            return self._state()

    # ---- observations -------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def _state(self) -> SimState:
        return SimState(self.time, self.step_count, self.qpos14(), self.qvel14(), self._stage, self.max_stage)

    def qpos14(self) -> np.ndarray:
        d = self.data
        out = []
        for side in SIDES:
            out.append(d.qpos[self._arm_qadr[side]])
            out.append([self.gripper_units.finger_to_normalized(d.qpos[self._finger_qadr[side][0]])])
        return np.concatenate(out).astype(float)

    def qvel14(self) -> np.ndarray:
        d = self.data
        out = []
        for side in SIDES:
            out.append(d.qvel[self._arm_dadr[side]])
            out.append([self.gripper_units.finger_velocity_to_normalized(d.qvel[self._finger_dadr[side][0]])])
        return np.concatenate(out).astype(float)

    def joint_state(self, side: str) -> JointStateSample:
        """The xs_sdk joint_states content for one follower arm (9 entries).

        position: 6 arm joints (rad), gripper motor (rad), left_finger (m), right_finger = -left_finger;
        velocity: arm and gripper motor velocities, fingers always 0 (the driver publishes 0);
        effort: present current in mA from actuator torque, fingers 0.
        """
        side = _side(side)
        with self._lock:
            d = self.data
            fq = float(d.qpos[self._finger_qadr[side][0]])
            fv = float(d.qvel[self._finger_dadr[side][0]])
            g_rad, g_vel, finger = self.gripper_units.driver_reading(fq, fv)
            pos = np.concatenate([d.qpos[self._arm_qadr[side]], [g_rad, finger, -finger]])
            vel = np.concatenate([d.qvel[self._arm_dadr[side]], [g_vel, 0.0, 0.0]])
            e = self.wc.effort
            arm_ma = 1000.0 * d.actuator_force[self._arm_act[side]] / np.asarray(e.torque_constant_nm_per_a)
            grip_ma = (1000.0 * d.actuator_force[self._finger_act[side][0]] * e.gripper_horn_radius_m
                       / e.gripper_torque_constant_nm_per_a)
            eff = np.concatenate([arm_ma, [grip_ma, 0.0, 0.0]])
        return JointStateSample(self.robot.driver_joint_names, pos.astype(float), vel.astype(float), eff.astype(float))

    def object_poses(self) -> dict[str, np.ndarray]:
        """Task objects' poses (x y z qw qx qy qz), e.g. {'box': ...} or {'peg': ..., 'socket': ...}."""
        with self._lock:
            return self.task.object_poses(self.data)

    def stage(self) -> int:
        return self._stage

    def success(self) -> bool:
        """True once the episode has reached the final stage (ACT counts the highest reward reached)."""
        return self.max_stage >= MAX_STAGE

    def _render_args(self, cameras, width: int | None, height: int | None) -> tuple[list[str], int, int]:
        cams = self.cameras if cameras is None else ([cameras] if isinstance(cameras, str) else list(cameras))
        w = int(width or self.width)
        h = int(height or self.height)
        if w > self.model.vis.global_.offwidth or h > self.model.vis.global_.offheight:
            raise ValueError(f"image {w}x{h} exceeds the offscreen buffer "
                             f"{self.model.vis.global_.offwidth}x{self.model.vis.global_.offheight}; "
                             "pass width/height to SimAloha()")
        return cams, h, w

    def render(self, cameras=None, width: int | None = None, height: int | None = None) -> dict[str, np.ndarray]:
        """Images of the named cameras (default: all four real-robot cameras), HxWx3 uint8 RGB."""
        cams, h, w = self._render_args(cameras, width, height)
        with self._lock:
            return self.renderer.render(self.data, cams, h, w)

    def snapshot(self) -> SimSnapshot:
        """The current state, for ``render_snapshot``: a few small array copies under the lock."""
        with self._lock:
            d = self.data
            return SimSnapshot(task=self.task_name, time=float(d.time), qpos=d.qpos.copy(), qvel=d.qvel.copy(),
                               act=d.act.copy(), mocap_pos=d.mocap_pos.copy(), mocap_quat=d.mocap_quat.copy())

    def render_snapshot(self, snap: SimSnapshot, cameras=None, width: int | None = None,
                        height: int | None = None) -> dict[str, np.ndarray]:
        """``render`` of a snapshot, without the lock: physics and commands go on meanwhile.

        Call it from one thread only (it owns the GL contexts and a scratch MjData per task), and
        not alongside ``render``. The images equal ``render``'s of the state the snapshot was taken in.
        """
        cams, h, w = self._render_args(cameras, width, height)
        model, _, _, renderer = self._worlds[snap.task]
        d = self._scratch.get(snap.task)
        if d is None:
            d = self._scratch[snap.task] = mujoco.MjData(model)
        d.time = snap.time
        d.qpos[:], d.qvel[:], d.act[:] = snap.qpos, snap.qvel, snap.act
        d.mocap_pos[:], d.mocap_quat[:] = snap.mocap_pos, snap.mocap_quat
        mujoco.mj_forward(model, d)  # body, camera and light poses, as step() leaves them
        return renderer.render(d, cams, h, w)

    def close(self) -> None:
        for _, _, _, r in self._worlds.values():
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
