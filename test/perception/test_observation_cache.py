import numpy as np
import pytest

from cosmos_policy_ros.perception.observation_cache import NotReady, Observation, ObservationCache

CAMS = ["cam_high", "cam_left_wrist", "cam_right_wrist", "cam_low"]
REQ = CAMS[:3]


def _filled(t=10.0):
    c = ObservationCache(CAMS, REQ, max_age_s=0.5, max_skew_s=0.1)
    for i, cam in enumerate(CAMS):
        c.put_image(cam, t + 0.01 * i, np.full((2, 2, 3), i, np.uint8), now=t)
    c.put_arm("left", t, np.arange(7.0), now=t)
    c.put_arm("right", t, np.arange(7.0) + 10, now=t)
    return c


def test_builds_synchronised_observation():
    obs = _filled().build(now=10.1)
    assert isinstance(obs, Observation)
    assert obs.qpos.tolist() == list(range(7)) + list(range(10, 17))
    assert sorted(obs.images) == sorted(CAMS) and obs.images["cam_low"][0, 0, 0] == 3
    assert obs.skew_s == pytest.approx(0.03) and obs.stamp == pytest.approx(10.03)


def test_refuses_with_a_reason_when_a_stream_is_missing_or_stale():
    c = ObservationCache(CAMS, REQ)
    assert c.build(0.0) == NotReady("no joint states yet from the left arm")
    c = _filled()
    r = c.build(now=10.7)
    assert isinstance(r, NotReady) and "stale" in r.reason
    for cam in CAMS:  # cameras refreshed, joint states not
        c.put_image(cam, 10.7, np.zeros((2, 2, 3), np.uint8), now=10.7)
    r = c.build(now=10.7)
    assert isinstance(r, NotReady) and r.reason.startswith("left is stale")


def test_optional_camera_may_be_stale_or_absent():
    c = ObservationCache(CAMS, REQ)
    for cam in REQ:
        c.put_image(cam, 5.0, np.zeros((2, 2, 3), np.uint8), now=5.0)
    c.put_arm("left", 5.0, np.zeros(7), now=5.0)
    c.put_arm("right", 5.0, np.zeros(7), now=5.0)
    obs = c.build(5.1)
    assert isinstance(obs, Observation) and "cam_low" not in obs.images
    c.put_image("cam_low", 4.0, np.zeros((2, 2, 3), np.uint8), now=4.0)
    obs = c.build(5.1)
    assert isinstance(obs, Observation) and "cam_low" not in obs.images


def test_skew_bound_and_bad_arm_state():
    c = _filled()
    c.put_image("cam_high", 10.3, np.zeros((2, 2, 3), np.uint8), now=10.3)
    r = c.build(now=10.3)
    assert isinstance(r, NotReady) and "ms apart" in r.reason
    with pytest.raises(ValueError, match="7 finite numbers"):
        c.put_arm("left", 1.0, [np.nan] * 7, now=1.0)
    with pytest.raises(ValueError, match="required cameras"):
        ObservationCache(["a"], ["b"])


def test_a_frame_stamped_in_the_future_is_not_fresh():
    """A frozen frame stamped seconds ahead used to count as fresh (age < 0) for as long as the stamp lay
    ahead; now it is refused, naming the stream, while a few ms of clock skew still pass."""
    c = _filled(t=10.0)
    c.put_image("cam_high", 16.0, np.zeros((2, 2, 3), np.uint8), now=10.0)
    r = c.build(now=10.05)
    assert isinstance(r, NotReady) and r.reason.startswith("cam_high is stamped 5.95 s in the future")
    c.put_image("cam_high", 10.08, np.zeros((2, 2, 3), np.uint8), now=10.05)   # 30 ms ahead: skew, fine
    c.put_image("cam_low", 10.08, np.zeros((2, 2, 3), np.uint8), now=10.05)
    assert isinstance(c.build(now=10.05), Observation)


def test_ages_on_one_clock_and_the_message_stamps_of_another_are_kept_apart():
    """observation_time: arrival - ages from arrival times (this host), the chunk stamped with the message
    stamps (the robot PC's clock, 30 s behind here)."""
    c = ObservationCache(REQ, REQ, max_age_s=0.5, max_skew_s=0.1)
    for cam in REQ:
        c.put_image(cam, 100.0, np.zeros((2, 2, 3), np.uint8), now=100.0, msg_stamp=70.0)
    c.put_arm("left", 100.02, np.zeros(7), now=100.02, msg_stamp=70.02)
    c.put_arm("right", 100.01, np.zeros(7), now=100.01, msg_stamp=70.01)
    obs = c.build(now=100.1)
    assert obs.stamp == pytest.approx(100.02) and obs.msg_stamp == pytest.approx(70.02)
    assert _filled().build(now=10.1).msg_stamp == pytest.approx(10.03)   # no message stamps given: the same


def test_stamp_offsets_are_measured_once_per_stream_and_said_in_one_line():
    from cosmos_policy_ros.perception.clock_offset import StampOffsets, offset_line

    offsets = StampOffsets(["cam_high", "left"], samples=3)
    found = [offsets.add(s, stamp, stamp + 30.0 + 0.001 * i) for i in range(3) for s, stamp in
             (("cam_high", 10.0 * i), ("left", 10.0 * i))]
    assert found[:-1] == [None] * 5 and found[-1] == {"cam_high": pytest.approx(30.001), "left": pytest.approx(30.001)}
    assert offsets.add("left", 0.0, 1.0) is None   # said once
    line = offset_line(found[-1], "stamp", 0.05, 3)
    assert "up to 30.001 s" in line and "set observation_time: arrival" in line and "\n" not in line
    assert "cam_high +30.001 s" in offset_line(found[-1], "arrival", 0.05, 3)
    assert offset_line({"cam_high": 0.004}, "stamp", 0.05, 3) is None   # synchronised: nothing to say
