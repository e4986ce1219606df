"""Bag writer/reader: stock-tool compatible rosbag2 MCAP, crash survival via flush, one-line errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bag_fixtures import TS, image_cdr

from cosmos_policy_ros.data.bag_reader import BagError, open_bag, recover_bag
from cosmos_policy_ros.data.bag_writer import BagWriter, BagWriterError, OfferedQos

IMG = "sensor_msgs/msg/Image"


def _write(path, n=20, flush_at=None, close=True):
    w = BagWriter(path)
    w.add_topic("/cam/image", IMG, OfferedQos(reliable=False, depth=5))
    for i in range(n):
        w.write("/cam/image", 1_000 + i * 10**7, image_cdr(i, fill=i))
        if flush_at is not None and i == flush_at:
            w.flush()
    if close:
        w.set_custom_data("outcome", "success")
        w.close()
    return w


def test_round_trip_with_rosbags_and_the_mcap_reader(tmp_path):
    _write(tmp_path / "b")
    bag = open_bag(tmp_path / "b")
    assert bag.complete and bag.storage == "mcap" and bag.topics["/cam/image"].count == 20
    assert bag.custom_data == {"outcome": "success"}
    msgs = list(bag.messages())
    assert [m.t_ns for m in msgs] == [1_000 + i * 10**7 for i in range(20)]
    assert bytes(bag.deserialize(msgs[5]).data) == bytes(TS.deserialize_cdr(image_cdr(5, fill=5), IMG).data)
    # metadata.yaml is a rosbag2 v9 file; the Foxglove mcap reader decodes the same file independently
    meta = (tmp_path / "b" / "metadata.yaml").read_text()
    assert "version: 9" in meta and "storage_identifier: mcap" in meta and "RIHS01_" in meta
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(tmp_path / "b" / "b.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        decoded = [m for _, _, _, m in reader.iter_decoded_messages()]
    assert len(decoded) == 20 and decoded[3].width == 16 and decoded[3].encoding == "rgb8"


def test_custom_type_hashes_equal_the_ros_build():
    """The RIHS01 written into bags equals what rosidl generated for msg/ (ros2 bag play accepts them)."""
    share = Path(sys.prefix) / "share" / "cosmos_policy_ros" / "msg"
    if not share.is_dir():
        pytest.skip("interfaces not built into this prefix")
    for name in ("ActionChunk", "PlanResult", "ExecutorStatus", "EpisodeEvent"):
        built = json.loads((share / f"{name}.json").read_text())["type_hashes"][0]["hash_string"]
        assert TS.hash_rihs01(f"cosmos_policy_ros/msg/{name}") == built, name


def test_killed_writer_keeps_everything_before_the_last_flush(tmp_path):
    w = _write(tmp_path / "b", n=20, flush_at=12, close=False)
    assert w.flushed_counts == {"/cam/image": 13}
    # No close: as after SIGKILL (nothing after the flush reached the file: the chunk is in memory).
    with pytest.raises(BagError, match="incomplete bag .*13 messages .*bag-info --recover"):
        open_bag(tmp_path / "b")
    partial = open_bag(tmp_path / "b", allow_incomplete=True)
    assert not partial.complete and partial.topics["/cam/image"].count == 13
    bag = recover_bag(tmp_path / "b")
    assert bag.complete and [m.t_ns for m in bag.messages()] == [1_000 + i * 10**7 for i in range(13)]
    assert not (tmp_path / "b.incomplete").exists() and not (tmp_path / "b.recovering").exists()


def test_truncated_and_foreign_bags_give_one_line_errors(tmp_path):
    _write(tmp_path / "b")
    mcap = tmp_path / "b" / "b.mcap"
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError) as err:
        open_bag(tmp_path / "b")
    assert "truncated or corrupt" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        open_bag(tmp_path / "x")
    (tmp_path / "old.bag").write_bytes(b"#ROSBAG V2.0\n")
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        open_bag(tmp_path / "old.bag")
    with pytest.raises(BagError, match="no such bag"):
        open_bag(tmp_path / "missing")
    with pytest.raises(BagWriterError, match="already exists"):
        BagWriter(tmp_path / "b")
