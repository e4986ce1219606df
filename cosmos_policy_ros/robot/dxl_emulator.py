"""A Dynamixel Protocol 2.0 bus emulator on a pseudo-terminal, for testing without motors.

Why: the dynamixel backend must be exercised through the real ``dynamixel-sdk`` (its packet
framing, CRC, byte stuffing, sync read timing), which only talks to a serial device. A pty gives
the SDK a real device path (``/dev/pts/N``); this emulator answers on the master side like a chain
of X-series motors: real CRC-16 (poly 0x8005), byte stuffing both ways, status packets with error
bytes, EEPROM write protection while torque is on, Secondary_ID (shadow motors follow writes to
their primary without answering), position limits in position mode, Drive_Mode's direction bit
(switching it mirrors the position about 2048 ticks), and motors that move toward their goal at
Profile_Velocity (0 = Velocity_Limit) while torque is on.

Instructions: PING, READ, WRITE, REBOOT, SYNC_READ, SYNC_WRITE (broadcast where the protocol
allows). Default motor set: ALOHA vx300s follower, IDs 1..9 (1-7 XM540-W270, 8-9 XM430-W350),
Drive_Mode as Interbotix's aloha_vx300s.yaml sets it.

Standalone: ``python -m cosmos_policy_ros.robot.dxl_emulator --link /tmp/ttyDXL_follower_left``.
"""
from __future__ import annotations

import argparse
import os
import select
import threading
import time
import tty
from dataclasses import dataclass

# ---- protocol constants (ROBOTIS e-manual, Protocol 2.0) ---------------------------------------------
HEADER = b"\xff\xff\xfd\x00"
BROADCAST = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_REBOOT = 0x01, 0x02, 0x03, 0x08
INST_SYNC_READ, INST_SYNC_WRITE, INST_STATUS = 0x82, 0x83, 0x55
ERR_INSTRUCTION, ERR_CRC, ERR_DATA_RANGE, ERR_DATA_LENGTH, ERR_DATA_LIMIT, ERR_ACCESS = 2, 3, 4, 5, 6, 7

XM540_W270, XM430_W350 = 1120, 1020
ALOHA_FOLLOWER_MODELS = {1: XM540_W270, 2: XM540_W270, 3: XM540_W270, 4: XM540_W270, 5: XM540_W270,
                         6: XM540_W270, 7: XM540_W270, 8: XM430_W350, 9: XM430_W350}
# Drive_Mode 1 (reversed): shoulder 2, elbow 4, wrist_angle 7 (Interbotix aloha_vx300s.yaml); the rest 0
ALOHA_FOLLOWER_DRIVE_MODES = {2: 1, 4: 1, 7: 1}

# control table (X-series): name -> (address, size)
CT = dict(model_number=(0, 2), firmware=(6, 1), id=(7, 1), baud_rate=(8, 1), return_delay=(9, 1),
          drive_mode=(10, 1), operating_mode=(11, 1), secondary_id=(12, 1), protocol=(13, 1),
          homing_offset=(20, 4), current_limit=(38, 2), velocity_limit=(44, 4), max_position=(48, 4),
          min_position=(52, 4), shutdown=(63, 1), torque_enable=(64, 1), led=(65, 1), status_return_level=(68, 1),
          hardware_error=(70, 1), bus_watchdog=(98, 1), goal_current=(102, 2), goal_velocity=(104, 4),
          profile_acceleration=(108, 4), profile_velocity=(112, 4), goal_position=(116, 4), moving=(122, 1),
          present_current=(126, 2), present_velocity=(128, 4), present_position=(132, 4),
          present_voltage=(144, 2), present_temperature=(146, 1))
EEPROM_END = 64
TABLE_SIZE = 147
RPM_PER_UNIT = 0.229
TICKS_PER_REV = 4096


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16 of Protocol 2.0 (polynomial 0x8005, init 0, no reflection)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(payload: bytes) -> bytes:
    """Insert 0xFD after every FF FF FD in instruction/params (so no header appears mid-packet)."""
    out = bytearray()
    for b in payload:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(payload):
        out.append(payload[i])
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd" and i + 1 < len(payload) and payload[i + 1] == 0xFD:
            i += 1  # drop the stuffed byte
        i += 1
    return bytes(out)


def build_packet(dxl_id: int, instruction: int, params: bytes = b"") -> bytes:
    body = stuff(bytes([instruction]) + params)
    length = len(body) + 2
    pkt = HEADER + bytes([dxl_id, length & 0xFF, length >> 8]) + body
    c = crc16(pkt)
    return pkt + bytes([c & 0xFF, c >> 8])


def status_packet(dxl_id: int, error: int, params: bytes = b"") -> bytes:
    return build_packet(dxl_id, INST_STATUS, bytes([error]) + params)


# ---- one motor ----------------------------------------------------------------------------------------
class Motor:
    def __init__(self, dxl_id: int, model: int, position: int = 2048):
        self.table = bytearray(TABLE_SIZE)
        self.set("model_number", model)
        self.set("firmware", 46)
        self.set("id", dxl_id)
        self.set("baud_rate", 3)
        self.set("operating_mode", 3)
        self.set("secondary_id", 255)
        self.set("protocol", 2)
        self.set("current_limit", 2047 if model == XM540_W270 else 1193)
        self.set("velocity_limit", 131)  # 131 x 0.229 rpm ~ pi rad/s
        self.set("max_position", 4095)
        self.set("min_position", 0)
        self.set("status_return_level", 2)
        self.set("present_voltage", 120)
        self.set("present_temperature", 30)
        self.set("goal_position", position)
        self.pos = float(position)
        self.set("present_position", position)
        self.t_last = time.monotonic()
        self.torque_history: list[int] = []

    # register access (little-endian, signed 4-byte positions)
    def get(self, name: str) -> int:
        addr, size = CT[name]
        return int.from_bytes(self.table[addr:addr + size], "little", signed=size == 4)

    def set(self, name: str, value: int) -> None:
        addr, size = CT[name]
        self.table[addr:addr + size] = int(value).to_bytes(size, "little", signed=size == 4)

    @property
    def id(self) -> int:
        return self.table[7]

    def update(self, now: float | None = None) -> None:
        """Move toward the goal while torque is on (profile velocity, 0 = velocity limit)."""
        now = time.monotonic() if now is None else now
        dt, self.t_last = now - self.t_last, now
        if self.get("torque_enable"):
            vel_units = self.get("profile_velocity") or self.get("velocity_limit")
            speed = vel_units * RPM_PER_UNIT / 60.0 * TICKS_PER_REV  # ticks/s
            err = self.get("goal_position") - self.pos
            step = max(-speed * dt, min(speed * dt, err))
            self.pos += step
            self.set("present_velocity", int(round(step / dt / speed * vel_units)) if dt > 0 else 0)
            self.set("moving", int(abs(err) > 1))
        self.set("present_position", int(round(self.pos)))

    def read(self, addr: int, length: int) -> tuple[int, bytes]:
        if addr + length > TABLE_SIZE or length == 0:
            return ERR_ACCESS, b""
        self.update()
        return 0, bytes(self.table[addr:addr + length])

    def write(self, addr: int, data: bytes) -> int:
        end = addr + len(data)
        if end > TABLE_SIZE or not data:
            return ERR_ACCESS
        if addr < EEPROM_END and self.get("torque_enable"):
            return ERR_ACCESS  # EEPROM is locked while torque is on
        gaddr = CT["goal_position"][0]
        if addr <= gaddr and gaddr + 4 <= end and self.get("operating_mode") == 3:
            goal = int.from_bytes(data[gaddr - addr:gaddr - addr + 4], "little", signed=True)
            if not self.get("min_position") <= goal <= self.get("max_position"):
                return ERR_DATA_LIMIT  # position mode enforces the EEPROM limits
        self.update()
        was_torque = self.get("torque_enable")
        was_reversed = self.get("drive_mode") & 1
        self.table[addr:end] = data
        if (self.get("drive_mode") & 1) != was_reversed:  # the direction flips: the same angle reads mirrored
            self.pos = 4096.0 - self.pos
            self.set("goal_position", int(round(self.pos)))
        if addr <= CT["torque_enable"][0] < end:
            t = self.get("torque_enable")
            self.torque_history.append(t)
            if t and not was_torque:
                self.t_last = time.monotonic()
        if addr <= CT["present_position"][0] < end:
            self.pos = float(self.get("present_position"))
        return 0


# ---- the bus ------------------------------------------------------------------------------------------
@dataclass
class BusStats:
    packets: int = 0
    crc_errors: int = 0
    status_sent: int = 0


class DxlBusEmulator:
    """Motors on one pty. ``port`` is the device path to give to dynamixel_sdk.PortHandler."""

    def __init__(self, models: dict[int, int] | None = None, positions: dict[int, int] | None = None,
                 drive_modes: dict[int, int] | None = None):
        models = ALOHA_FOLLOWER_MODELS if models is None else models
        positions = positions or {}
        drive_modes = ALOHA_FOLLOWER_DRIVE_MODES if drive_modes is None else drive_modes
        self.motors = {i: Motor(i, m, positions.get(i, 2048)) for i, m in models.items()}
        for i, mode in drive_modes.items():
            if i in self.motors:
                self.motors[i].set("drive_mode", mode)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.stats = BusStats()
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dxl-emulator", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> "DxlBusEmulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def motor(self, dxl_id: int) -> Motor:
        return self.motors[dxl_id]

    # serving
    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            self._buf += data
            for pkt in self._packets():
                reply = self.handle(pkt)
                if reply:
                    os.write(self.master, reply)

    def _packets(self):
        """Yield complete, CRC-valid packets (id, instruction, unstuffed params) from the buffer."""
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                del self._buf[:-3]
                return
            del self._buf[:start]
            if len(self._buf) < 7:
                return
            length = self._buf[5] | (self._buf[6] << 8)
            total = 7 + length
            if len(self._buf) < total:
                return
            raw = bytes(self._buf[:total])
            del self._buf[:total]
            self.stats.packets += 1
            if crc16(raw[:-2]) != (raw[-2] | (raw[-1] << 8)):
                self.stats.crc_errors += 1  # a real motor stays silent (or answers CRC error)
                continue
            body = unstuff(raw[7:-2])
            yield raw[4], body[0], body[1:]

    def handle(self, packet) -> bytes:
        """Apply one instruction; return the status packet bytes (possibly several, possibly none)."""
        dxl_id, inst, p = packet
        with self._lock:
            if inst == INST_PING:
                targets = (self.motors.values() if dxl_id == BROADCAST
                           else [m for m in self.motors.values() if m.id == dxl_id])
                return b"".join(status_packet(m.id, 0, m.table[0:2] + bytes([m.table[6]])) for m in targets)
            if inst == INST_READ:
                m = self._by_id(dxl_id)
                if m is None or len(p) != 4:
                    return b""
                err, data = m.read(p[0] | p[1] << 8, p[2] | p[3] << 8)
                return self._status(m, err, data)
            if inst == INST_WRITE:
                addr, data = p[0] | p[1] << 8, bytes(p[2:])
                reply = b""
                for m in self.motors.values():
                    if m.id == dxl_id or dxl_id == BROADCAST or m.get("secondary_id") == dxl_id:
                        err = m.write(addr, data)
                        if m.id == dxl_id:
                            reply = self._status(m, err)
                return reply
            if inst == INST_REBOOT:
                m = self._by_id(dxl_id)
                if m is None:
                    return b""
                m.set("hardware_error", 0)
                m.set("torque_enable", 0)
                m.torque_history.append(0)
                return self._status(m, 0)
            if inst == INST_SYNC_READ:
                addr, length = p[0] | p[1] << 8, p[2] | p[3] << 8
                out = b""
                for i in p[4:]:
                    m = self._by_id(i)
                    if m is not None:
                        err, data = m.read(addr, length)
                        out += status_packet(m.id, err, data)
                        self.stats.status_sent += 1
                return out
            if inst == INST_SYNC_WRITE:
                addr, length = p[0] | p[1] << 8, p[2] | p[3] << 8
                block = p[4:]
                for k in range(0, len(block) - length, length + 1):
                    target, data = block[k], bytes(block[k + 1:k + 1 + length])
                    for m in self.motors.values():
                        if m.id == target or m.get("secondary_id") == target:
                            m.write(addr, data)
                return b""
            m = self._by_id(dxl_id)
            return self._status(m, ERR_INSTRUCTION) if m else b""

    def _by_id(self, dxl_id: int) -> Motor | None:
        for m in self.motors.values():
            if m.id == dxl_id:
                return m
        return None

    def _status(self, m: Motor, err: int, data: bytes = b"") -> bytes:
        if m.get("status_return_level") == 0:
            return b""
        self.stats.status_sent += 1
        return status_packet(m.id, err, data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--link", help="create this symlink to the pty (e.g. /tmp/ttyDXL_follower_left)")
    args = ap.parse_args(argv)
    with DxlBusEmulator() as bus:
        if args.link:
            if os.path.islink(args.link):
                os.unlink(args.link)
            os.symlink(bus.port, args.link)
        print(f"Dynamixel Protocol 2.0 emulator (IDs {sorted(bus.motors)}) on {args.link or bus.port}", flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            if args.link and os.path.islink(args.link):
                os.unlink(args.link)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
