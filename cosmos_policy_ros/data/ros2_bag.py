"""`ros2 bag record -s mcap` as the episode bag writer on machines with the ROS 2 CLI (robot PCs).

rosbag2's own recorder is the reference implementation (C++, zero-copy where available), so it is
preferred whenever it exists; the recorder node then only runs episodes (markers, labels, manifest,
auto-record) and starts/stops one `ros2 bag record` process per episode. SIGINT ends it cleanly
(rosbag2 writes the MCAP summary and metadata.yaml on SIGINT).
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def ros2_cli() -> str | None:
    """Path of a working `ros2` with the bag verb, or None (the dev venv has no ROS 2 CLI)."""
    exe = shutil.which("ros2")
    if exe is None:
        return None
    try:
        ok = subprocess.run([exe, "bag", "record", "--help"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if ok else None


class Ros2BagProcess:
    """One `ros2 bag record` run writing the bag folder ``path``."""

    def __init__(self, path: str | Path, topics: list[str], extra_args: list[str] | None = None,
                 ros2: str | None = None):
        self.path = Path(path)
        self.ros2 = ros2 or ros2_cli() or "ros2"
        self.argv = [self.ros2, "bag", "record", "-s", "mcap", "-o", str(self.path), *(extra_args or []), *topics]
        self.log_path = self.path.with_name(self.path.name + ".ros2bag.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.path.exists():
            raise RuntimeError(f"{self.path}: already exists; a bag is never overwritten")
        self._log = open(self.log_path, "w")
        # Own process group: a Ctrl-C in the operator's terminal reaches the recorder node, which
        # then stops this process in order (marker first), instead of racing it.
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=os.environ.copy())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (rosbag2 finalises the bag), escalating only if it hangs; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()
        if self.proc.returncode == 0 and self.log_path.exists():
            self.log_path.unlink()
        return self.proc.returncode

    def discard(self) -> None:
        self.stop()
        shutil.rmtree(self.path, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
