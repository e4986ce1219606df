"""SimAloha: seeded determinism, commands reach targets, driver-style joint states, bad input, images."""
from __future__ import annotations

import numpy as np
import pytest

from cosmos_policy_ros.robot.aloha import AlohaRobot

START = np.array([0.0, -0.96, 1.16, 0.0, -0.3, 0.0])


def test_reset_with_seed_is_deterministic(sim):
    def rollout(seed):
        sim.reset("transfer_cube", seed)
        poses = sim.object_poses()["box"].copy()
        rng = np.random.default_rng(0)
        for _ in range(15):
            a = np.concatenate([START + rng.normal(0, 0.05, 6), [0.5], START + rng.normal(0, 0.05, 6), [0.5]])
            st = sim.step(a)
        return poses, st.qpos, sim.data.qpos.copy(), sim.render(["cam_high"], width=320, height=240)["cam_high"]

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    assert sim.seed == 4


def test_object_poses_follow_gym_aloha_sampler(sim):
    sim.reset("insertion", 7)
    rng = np.random.RandomState(7)
    peg = rng.uniform([0.1, 0.4, 0.05], [0.2, 0.6, 0.05])
    socket = rng.uniform([-0.2, 0.4, 0.05], [-0.1, 0.6, 0.05])
    poses = sim.object_poses()
    assert np.allclose(poses["peg"][:3], peg) and np.allclose(poses["socket"][:3], socket)
    sim.reset("transfer_cube", 7)
    assert np.allclose(sim.object_poses()["box"][:3],
                       np.random.RandomState(7).uniform([0, 0.4, 0.05], [0.2, 0.6, 0.05]))


def test_reset_without_seed_records_a_replayable_seed(sim):
    sim.reset("transfer_cube")
    seed, poses = sim.seed, sim.object_poses()["box"]
    sim.reset("transfer_cube", seed)
    assert np.array_equal(sim.object_poses()["box"], poses)


def test_arm_commands_move_joints_to_targets(sim):
    sim.reset("transfer_cube", 0)
    target_l = START + np.array([0.3, 0.2, -0.2, 0.3, 0.3, -0.4])
    target_r = START + np.array([-0.3, 0.1, -0.1, -0.2, 0.2, 0.4])
    sim.apply_arm_command("left", target_l)
    sim.apply_arm_command("right", target_r)
    for _ in range(100):  # 2 s
        sim.step()
    assert np.allclose(sim.joint_state("left").position[:6], target_l, atol=0.03)
    assert np.allclose(sim.joint_state("right").position[:6], target_r, atol=0.03)
    assert sim.time == pytest.approx(2.0)


def test_gripper_command_in_motor_radians(sim):
    sim.reset("transfer_cube", 0)
    robot = sim.robot
    sim.apply_gripper_command("left", float(robot.normalized_to_follower_joint(1.0)))
    for _ in range(50):
        sim.step()
    js = sim.joint_state("left")
    assert robot.follower_joint_to_normalized(js.position[6]) > 0.9
    assert robot.follower_finger_to_normalized(js.position[7]) > 0.9
    assert sim.qpos14()[6] > 0.9 and sim.qpos14()[13] < 0.2  # right gripper untouched
    sim.apply_gripper_command("left", float(robot.normalized_to_follower_joint(0.0)))
    for _ in range(50):
        sim.step()
    assert sim.qpos14()[6] < 0.15


@pytest.mark.parametrize("robot_config", ["robot/aloha_interbotix.yaml", "robot/aloha_ros1.yaml"])
def test_joint_state_has_xs_sdk_layout_in_robot_units(robot_config):
    from cosmos_policy_ros.sim.sim_aloha import SimAloha

    robot = AlohaRobot.from_yaml(robot_config)
    with SimAloha("transfer_cube", robot=robot) as s:
        s.reset(seed=1)
        s.step(np.concatenate([START, [0.7], START + 0.1, [0.3]]))
        for _ in range(30):
            s.step()
        for i, side in enumerate(("left", "right")):
            js = s.joint_state(side)
            assert js.name == ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
                               "gripper", "left_finger", "right_finger"]
            assert js.position.shape == js.velocity.shape == js.effort.shape == (9,)
            assert js.position[8] == -js.position[7]
            assert js.velocity[7] == js.velocity[8] == 0.0 and js.effort[7] == js.effort[8] == 0.0
            assert np.any(js.effort[:6] != 0.0)  # gravity load shows as current
            # What the observation side computes from the message equals the sim's policy-space state.
            assert np.allclose(robot.arm_state_from_joint_state(js.name, js.position), s.qpos14()[7 * i:7 * i + 7])
            assert robot.follower_joint_to_normalized(js.position[6]) == pytest.approx(s.qpos14()[7 * i + 6])


@pytest.mark.parametrize("call, match", [
    (lambda s: s.apply_arm_command("left", [0.0] * 5), "expected 6 numbers"),
    (lambda s: s.apply_arm_command("right", [0.0, 0.0, float("nan"), 0.0, 0.0, 0.0]), "NaN"),
    (lambda s: s.apply_arm_command("middle", [0.0] * 6), "side must be"),
    (lambda s: s.apply_arm_command("left", "abc"), "expected 6"),
    (lambda s: s.apply_gripper_command("left", float("inf")), "NaN or inf"),
    (lambda s: s.apply_gripper_command("left", [0.1, 0.2]), "expected 1 numbers"),
    (lambda s: s.step(np.zeros(13)), "expected 14 numbers"),
    (lambda s: s.reset(seed=-1), "seed must be"),
    (lambda s: s.reset("stack_blocks", 0), "unknown task"),
    (lambda s: s.render(["cam_nowhere"]), "unknown camera"),
])
def test_bad_input_raises_one_clear_error_and_sim_keeps_running(sim, call, match):
    sim.reset("transfer_cube", 0)
    ctrl = sim.data.ctrl.copy()
    with pytest.raises(ValueError, match=match):
        call(sim)
    assert np.array_equal(sim.data.ctrl, ctrl)
    st = sim.step()
    assert np.all(np.isfinite(st.qpos)) and sim.task_name == "transfer_cube"


def test_out_of_limit_arm_command_is_clipped_not_dropped(sim):
    sim.reset("transfer_cube", 0)
    sim.apply_arm_command("left", [0.0, -5.0, 1.16, 0.0, -0.3, 0.0])
    lo = sim.robot.arm_lower[1]
    for _ in range(100):
        sim.step()
    assert sim.qpos14()[1] == pytest.approx(lo, abs=0.05)


def test_images_are_nontrivial_and_sized(sim):
    sim.reset("transfer_cube", 0)
    imgs = sim.render()
    assert set(imgs) == {"cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"}
    for name, img in imgs.items():
        assert img.shape == (480, 640, 3) and img.dtype == np.uint8, name
        assert img.std() > 10.0, f"{name} looks blank (std {img.std():.1f})"
    small = sim.render(["cam_high"], width=320, height=240)["cam_high"]
    assert small.shape == (240, 320, 3) and small.std() > 10.0
    # the red cube is visible from the overhead camera
    red = (small[..., 0] > 150) & (small[..., 1] < 60) & (small[..., 2] < 60)
    assert red.sum() > 5


def test_wrist_images_change_when_the_arm_moves(sim):
    sim.reset("transfer_cube", 0)
    before = sim.render(["cam_left_wrist", "cam_right_wrist", "cam_high"], width=320, height=240)
    sim.apply_arm_command("left", START + np.array([0.4, 0.0, 0.0, 0.0, 0.3, 0.0]))
    for _ in range(50):
        sim.step()
    after = sim.render(["cam_left_wrist", "cam_right_wrist", "cam_high"], width=320, height=240)
    diff = {k: np.abs(after[k].astype(int) - before[k].astype(int)).mean() for k in before}
    assert diff["cam_left_wrist"] > 10.0, diff
    assert diff["cam_left_wrist"] > 2 * diff["cam_right_wrist"], diff  # the other wrist only sees the arm move


def test_oversized_render_is_rejected(sim):
    with pytest.raises(ValueError, match="exceeds the offscreen buffer"):
        sim.render(["cam_high"], width=4000, height=3000)


def test_snapshot_renders_the_state_it_was_taken_in_while_physics_goes_on(sim):
    sim.reset("transfer_cube", 0)
    sim.apply_arm_command("left", START + np.array([0.4, 0.0, 0.0, 0.0, 0.3, 0.0]))
    for _ in range(20):
        sim.step()
    cams = ["cam_left_wrist", "cam_high"]
    snap = sim.snapshot()
    now = sim.render(cams, width=320, height=240)
    for _ in range(20):  # the arm moves on after the snapshot
        sim.step()
    later = sim.render_snapshot(snap, cams, width=320, height=240)
    for cam in cams:
        assert np.array_equal(later[cam], now[cam]), cam
    assert not np.array_equal(sim.render(cams, width=320, height=240)["cam_left_wrist"], now["cam_left_wrist"])


def test_a_joint_without_torque_goes_limp_and_holds_again_with_torque(sim):
    """The driver's torque_enable in the sim: the left arm sags without torque, the right one holds; torque on
    drives back to the targets; the state survives a reset (a reset does not switch motors)."""
    sim.reset("transfer_cube", 1)
    off = np.array([False] * 6 + [True])
    sim.set_torque("left", off)
    for _ in range(25):
        sim.step()
    q = sim.qpos14()
    assert q[1] < START[1] - 0.3  # the left shoulder fell
    assert np.allclose(q[7:13], START, atol=0.02)  # the right arm held
    sim.reset("transfer_cube", 1)
    for _ in range(15):
        sim.step()
    assert sim.qpos14()[1] < START[1] - 0.1  # still without torque after the reset
    sim.set_torque("left", np.ones(7, bool))
    sim.apply_arm_command("left", START)
    for _ in range(100):
        sim.step()
    assert np.allclose(sim.qpos14()[:6], START, atol=0.03)
    with pytest.raises(ValueError, match="expected 7 values"):
        sim.set_torque("left", [True] * 6)
