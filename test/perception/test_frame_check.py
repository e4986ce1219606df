from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.frame_check import FrameChecker


def test_degenerate_frames_are_refused_every_time_with_the_camera_and_size():
    cams = load_cameras()
    check = FrameChecker(cams.width, cams.height, cams.min_side_px)
    for h, w in ((1, 1), (24, 32)):
        v = check.check("cam_high", h, w)
        assert not v.usable and v.line.startswith(f"cam_high: {w}x{h} frame refused (degenerate")
        assert not check.check("cam_high", h, w).usable


def test_another_resolution_is_used_and_said_once_per_camera_and_size():
    check = FrameChecker(640, 480, 48)
    assert check.check("cam_high", 480, 640).usable and check.check("cam_high", 480, 640).line == ""
    first = check.check("cam_high", 64, 64)
    assert first.usable and "64x64 frames, configured 640x480" in first.line
    assert check.check("cam_high", 64, 64).line == ""
    assert check.check("cam_low", 64, 64).line != ""


def test_the_camera_config_names_the_compressed_subtopic_per_camera(tmp_path):
    import yaml

    from cosmos_policy_ros.config import share_dir
    from cosmos_policy_ros.perception.cameras import load_cameras

    cams = yaml.safe_load((share_dir() / "config" / "cameras.yaml").read_text())
    cams["cameras"]["cam_high"]["transport"] = "compressed"
    (tmp_path / "cams.yaml").write_text(yaml.safe_dump(cams))
    cfg = load_cameras(tmp_path / "cams.yaml")
    assert cfg.subscribed_topic("cam_high") == "/cam_high/camera/color/image_rect_raw/compressed"
    assert cfg.subscribed_topic("cam_left_wrist") == cfg.topic("cam_left_wrist")
    assert load_cameras().cameras["cam_high"].transport == "raw"
