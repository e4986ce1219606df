"""Collision guard: the two vx300s arms as capsules, checked against each other, the table and fixed obstacles.

Why: joint limits and per-tick step caps do not stop a policy that has left its data from driving a wrist
into the table or into the other arm, which face each other over a small table on the ALOHA.

Geometry, built once at start (``CollisionModel.from_config``) from the MJCF the simulator loads
(gym-aloha's bimanual ViperX scene; its arm bases stand where the real ALOHA's do, ±0.469 m apart):

    link meshes ──split along the principal axis (≤ 2^depth pieces)──> capsules in the link frame
    fingers (slide joints) ──swept over their whole travel──────────> capsules in the gripper frame

Each capsule encloses every vertex of its piece of the mesh surface (a triangle crossing a cut belongs
to both pieces), so capsule distances never exceed the true ones. The fingers are modelled over their
whole travel, so the gripper value never changes a checked distance and the guard never slows a gripper.
Per tick: forward kinematics in numpy for a batch of 14-D configurations, then segment-segment distances
for every checked pair:

    finger ↔ finger of the other arm     margins.finger_finger   (default unchecked: handovers)
    hand   ↔ hand of the other arm       margins.hand_hand       (wrist, gripper, fingers; default 0)
    link   ↔ link of the other arm       margins.arm_arm         (default 2 cm)
    finger ↔ table plane                 margins.finger_table    (default unchecked: grasping on the table)
    link   ↔ table plane (z = table_z)   margins.table           (default 1 cm)
    link   ↔ obstacle capsule            margins.obstacle        (default 2 cm)

A margin of null leaves that class of pairs unchecked. The defaults let the scripted demonstrations through:
transfer-cube untouched (closest checked pair 2.0 cm, a finger at the other gripper during the handover),
insertion still succeeds (its targets press the grippers together; the guard shortens those steps). No
self-collision check: the vx300s joint limits keep each arm clear of itself in practice.

``CollisionGuard.limit`` is the SafetyFilter stage: a target whose pairs would come inside their margins is
replaced by the farthest point along the joint-space segment from the previous command that stays clear
(one batched evaluation of 7 points, 1/8 of the step apart), or by the previous arm joints. A pair the
previous command already had inside its margin may only move away. MuJoCo is imported only to build the
model; the checks are numpy (~0.05-0.2 ms per evaluation, bench/bench_collision.py).

Hooks for markers and status: ``CollisionModel.world_capsules(q14)`` (endpoints; radii and labels in
``capsules``) and ``CollisionModel.closest(q14)`` (the pair nearest its margin).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.sim.assets import AssetsNotFoundError, gym_aloha_assets_dir

SIDES = ("left", "right")
ARM_INDICES = np.r_[0:6, 7:13]  # arm joints in the 14-D vector (grippers at 6 and 13 never matter here)
_EPS = 1e-12


@dataclass
class CollisionMargins:
    # m, smallest allowed distance between the fitted capsules (they enclose the meshes, by up to ~1.5 cm
    # on boxy links); null = that class of pairs is not checked. Pairs take the first class that fits.
    # A finger vs a finger of the other arm: a handover closes both hands on one small object.
    finger_finger: float | None = None
    # A hand link vs a hand link of the other arm: wrists and grippers meet at an insertion.
    hand_hand: float | None = 0.0
    # Any other link of one arm vs a link of the other arm.
    arm_arm: float | None = 0.02
    # A finger vs the table top: grasping an object that lies on the table.
    finger_table: float | None = None
    # Any other moving link vs the table top.
    table: float | None = 0.01
    # Any moving link vs an obstacle capsule.
    obstacle: float | None = 0.02


@dataclass
class ObstacleCapsule:
    """A fixed obstacle (e.g. a frame upright): the segment a-b in world metres, swollen by radius."""
    name: str
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius: float


@dataclass
class CollisionConfig:
    # MJCF scene (inside gym-aloha's assets/) the link geometry and the arm placement are taken from.
    scene: str = "bimanual_viperx_transfer_cube.xml"
    # Root body of each arm in that scene; its children are named "<prefix>/<link>_link".
    arm_prefix: dict[str, str] = field(default_factory=lambda: {"left": "vx300s_left", "right": "vx300s_right"})
    # m, world z of the table top (the scene's table and the arms' base plane).
    table_z: float = 0.0
    # Link names (body name without the arm prefix and "_link") for the margin classes below.
    hand_links: list[str] = field(default_factory=lambda: ["wrist", "gripper", "gripper_prop",
                                                           "left_finger", "right_finger"])
    finger_links: list[str] = field(default_factory=lambda: ["left_finger", "right_finger"])
    margins: CollisionMargins = field(default_factory=CollisionMargins)
    # Fixed obstacles besides the table, world frame (the sim scene has none; a lab adds its frame uprights).
    obstacles: list[ObstacleCapsule] = field(default_factory=list)
    # Each mesh is split into at most 2**split_depth capsules (a split is kept when it saves >= 20 % volume).
    split_depth: int = 2

    def validate(self) -> None:
        if set(self.arm_prefix) != set(SIDES):
            raise cfg.ConfigError("collision.arm_prefix: needs exactly the keys left and right")
        for name in ("finger_finger", "hand_hand", "arm_arm", "finger_table", "table", "obstacle"):
            v = getattr(self.margins, name)
            if v is not None and not v >= 0:
                raise cfg.ConfigError(f"collision.margins.{name}: must be >= 0 m or null, got {v}")
        for i, ob in enumerate(self.obstacles):
            if not ob.radius >= 0:
                raise cfg.ConfigError(f"collision.obstacles[{i}].radius: must be >= 0 m, got {ob.radius}")
        if not 0 <= self.split_depth <= 4:
            raise cfg.ConfigError(f"collision.split_depth: expected 0..4, got {self.split_depth}")


@dataclass
class Capsules:
    """Capsules rigidly attached to links: endpoints a, b (C, 3) in the link frame, radius (C,)."""
    link: np.ndarray    # (C,) index into the model's links
    a: np.ndarray
    b: np.ndarray
    radius: np.ndarray
    labels: list[str]   # "left/wrist", ...


@dataclass
class Clearance:
    """The closest checked pair of one configuration (for logs and markers)."""
    pair: str           # "right/gripper - table"
    distance: float     # m between the two capsules (negative: overlapping)
    margin: float       # m required for this pair

    def __str__(self) -> str:
        return f"{self.pair} at {100 * self.distance:.1f} cm (margin {100 * self.margin:.1f} cm)"


@dataclass
class GuardResult:
    command: np.ndarray
    intervened: bool
    fraction: float = 1.0              # how much of the step from the previous command was kept
    closest: Clearance | None = None   # the worst pair of the refused target


# ---- capsule fitting (start-up only) -----------------------------------------------------------------
def _capsule_along(points: np.ndarray, axis: np.ndarray, centre: np.ndarray | None = None):
    """Capsule with direction ``axis`` containing ``points``; its axis passes through ``centre`` (2-D, in the
    plane normal to ``axis``; default: a Bădoiu-Clarkson minimax centre). Containment is exact for any centre.
    Returns (a, b, radius, centre)."""
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    uv = points @ np.column_stack([e1, e2])
    if centre is None:
        centre = uv.mean(0)
        for i in range(1, 60):
            far = uv[np.argmax(np.einsum("ij,ij->i", uv - centre, uv - centre))]
            centre = centre + (far - centre) / (i + 1)
    r2 = np.einsum("ij,ij->i", uv - centre, uv - centre)
    radius = float(np.sqrt(r2.max()))
    t = points @ axis
    h = np.sqrt(np.maximum(radius ** 2 - r2, 0.0))
    t1, t0 = float((t - h).max()), float((t + h).min())
    base = centre[0] * e1 + centre[1] * e2
    if t1 < t0:  # shorter than wide: a sphere at the middle, radius re-measured
        mid = base + 0.5 * (t0 + t1) * axis
        return mid, mid.copy(), float(np.linalg.norm(points - mid, axis=1).max()), centre
    return base + t0 * axis, base + t1 * axis, radius, centre


def _volume(a, b, r) -> float:
    return float(np.pi * r * r * np.linalg.norm(b - a) + 4.0 / 3.0 * np.pi * r ** 3)


def _principal_axes(points: np.ndarray) -> np.ndarray:
    _, _, vt = np.linalg.svd(points - points.mean(0), full_matrices=False)
    return vt


def _sample(points: np.ndarray, n: int = 500) -> np.ndarray:
    if len(points) <= n:
        return points
    return points[np.random.default_rng(0).choice(len(points), n, replace=False)]


def fit_capsule(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One capsule containing ``points`` (N, 3): the smallest by volume over the principal and frame axes
    (chosen on a sample of the points, then made to contain all of them)."""
    sample = _sample(points)
    best = None
    for axis in np.vstack([_principal_axes(sample), np.eye(3)]):
        axis = axis / np.linalg.norm(axis)
        a, b, r, centre = _capsule_along(sample, axis)
        v = _volume(a, b, r)
        if best is None or v < best[0]:
            best = (v, axis, centre)
    a, b, r, _ = _capsule_along(points, best[1], best[2])
    return a, b, r


def fit_capsules(prims: np.ndarray, depth: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Capsules covering every primitive of ``prims`` (N, k, 3: convex point groups, e.g. triangles).

    Splits along the principal axis while that saves >= 20 % of the volume; a primitive crossing the cut
    goes to both halves, so every primitive lies wholly inside one capsule."""
    pts = prims.reshape(-1, 3)
    whole = fit_capsule(pts)
    if depth <= 0 or len(prims) < 8:
        return [whole]
    axis = _principal_axes(_sample(pts))[0]
    t = prims @ axis                                  # (N, k)
    lo, hi = t.min(1), t.max(1)
    best = None
    for s in np.quantile(t.mean(1), [0.2, 0.35, 0.5, 0.65, 0.8]):
        left, right = prims[lo <= s], prims[hi >= s]
        if len(left) == 0 or len(right) == 0:
            continue
        v = _volume(*fit_capsule(_sample(left.reshape(-1, 3)))) + _volume(*fit_capsule(_sample(right.reshape(-1, 3))))
        if best is None or v < best[0]:
            best = (v, left, right)
    if best is None or best[0] > 0.8 * _volume(*whole):
        return [whole]
    return fit_capsules(best[1], depth - 1) + fit_capsules(best[2], depth - 1)


def _subdivide(tris: np.ndarray, max_edge: float) -> np.ndarray:
    """Split triangles (N, 3, 3) 4-ways until every edge is at most ``max_edge`` (cuts stay tight)."""
    for _ in range(8):
        edge = np.linalg.norm(tris - np.roll(tris, 1, axis=1), axis=2).max(1)
        big = edge > max_edge
        if not big.any():
            break
        t = tris[big]
        m01, m12, m20 = (t[:, 0] + t[:, 1]) / 2, (t[:, 1] + t[:, 2]) / 2, (t[:, 2] + t[:, 0]) / 2
        new = np.concatenate([np.stack(x, 1) for x in ((t[:, 0], m01, m20), (m01, t[:, 1], m12),
                                                        (m20, m12, t[:, 2]), (m01, m12, m20))])
        tris = np.concatenate([tris[~big], new])
    return tris


# ---- kinematics ----------------------------------------------------------------------------------------
@dataclass
class Link:
    """A rigid part of an arm: frame = parent frame · (pos, rot) · rotation about ``axis`` by joint ``joint``."""
    name: str
    side: int                 # 0 left, 1 right
    parent: int               # index into the links, -1 = world
    pos: np.ndarray
    rot: np.ndarray
    axis: np.ndarray | None   # hinge axis in the link frame; None = fixed (the arm's base)
    anchor: np.ndarray        # hinge position in the link frame
    joint: int = -1           # index into the 12 arm joints (ARM_INDICES order)


class CollisionModel:
    """Both arms' capsules, the checked pairs and their margins; distances for batches of 14-D commands."""

    def __init__(self, links: list[Link], capsules: Capsules, config: CollisionConfig):
        self.links = links
        self.capsules = capsules
        self.config = config
        self._chain = _Chain(links)
        ones = np.ones((len(capsules.a), 1))
        self._ends = np.stack([np.hstack([capsules.a, ones]), np.hstack([capsules.b, ones])], axis=2)  # (C, 4, 2)
        self._build_pairs()

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: CollisionConfig, arm_joints: list[str]) -> CollisionModel:
        """Fit the capsules to the scene's meshes (cached per process: ~1.5 s the first time)."""
        config.validate()
        links, caps = _fit_scene(config.scene, tuple(sorted(config.arm_prefix.items())), tuple(arm_joints),
                                 config.split_depth)
        return cls(links, caps, config)

    def _build_pairs(self) -> None:
        c, cc, mg = self.capsules, self.config, self.config.margins
        name = [lab.split("/", 1)[1] for lab in c.labels]
        for key in ("hand_links", "finger_links"):
            unknown = sorted(set(getattr(cc, key)) - set(name))
            if unknown:
                raise cfg.ConfigError(f"collision.{key}: unknown link {unknown[0]!r} (links: {sorted(set(name))})")
        side = np.array([self.links[i].side for i in c.link])
        moving = np.array([self.links[i].axis is not None for i in c.link])
        finger = np.array([n in cc.finger_links for n in name])
        hand = np.array([n in cc.hand_links for n in name])
        ia, ib, margin = [], [], []
        for i in np.flatnonzero(side == 0):
            for j in np.flatnonzero(side == 1):
                m = (mg.finger_finger if finger[i] and finger[j] else mg.hand_hand if hand[i] and hand[j]
                     else mg.arm_arm)
                if m is not None and (moving[i] or moving[j]):
                    ia.append(i), ib.append(j), margin.append(m)
        self.pair_a, self.pair_b, self.pair_margin = np.array(ia, int), np.array(ib, int), np.array(margin, float)
        table = [(k, mg.finger_table if finger[k] else mg.table) for k in np.flatnonzero(moving)]
        table = [(k, m) for k, m in table if m is not None]
        self.table_caps = np.array([k for k, _ in table], int)
        self.table_margin = np.array([m for _, m in table], float)
        obs = cc.obstacles
        self.obstacle_a = np.array([o.a for o in obs], float).reshape(-1, 3)
        self.obstacle_b = np.array([o.b for o in obs], float).reshape(-1, 3)
        self.obstacle_r = np.array([o.radius for o in obs], float)
        self.obstacle_caps = np.flatnonzero(moving) if obs and mg.obstacle is not None else np.zeros(0, int)
        self.pair_count = len(self.pair_a) + len(self.table_caps) + len(self.obstacle_caps) * len(obs)
        sphere = np.linalg.norm(c.b - c.a, axis=1) / 2 + c.radius   # each capsule lies within this of its middle
        self._sphere_sum = sphere[self.pair_a] + sphere[self.pair_b] + self.pair_margin

    # ---- per tick ------------------------------------------------------------------------------
    def link_poses(self, q14: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World rotations (B, L, 3, 3) and positions (B, L, 3) of every link for commands q14 (B, 14)."""
        t = self._chain.transforms(np.asarray(q14, float)[:, ARM_INDICES])
        return t[..., :3, :3], t[..., :3, 3]

    def world_capsules(self, q14: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Capsule endpoints a, b (B, C, 3) in the world frame (radii: ``capsules.radius``); for markers too."""
        t = self._chain.transforms(np.asarray(np.atleast_2d(q14), float)[:, ARM_INDICES])
        ends = t[:, self.capsules.link] @ self._ends                # (B, C, 4, 2)
        return ends[..., :3, 0], ends[..., :3, 1]

    def clearances(self, q14: np.ndarray, exact: bool = False) -> np.ndarray:
        """Distance minus margin (B, P) of every checked pair: arm-arm pairs, then table, then obstacles.

        Broad phase: an arm-arm pair whose bounding spheres (around each capsule's middle) keep their margin
        gets the spheres' clearance, a lower bound that is >= 0; so a value is negative exactly when the
        capsules are inside their margin, and then it is exact. ``exact=True`` computes every pair."""
        a, b = self.world_capsules(q14)
        rad = self.capsules.radius
        i, j = self.pair_a, self.pair_b
        if exact:
            arm = segment_distance(a[:, i], b[:, i], a[:, j], b[:, j]) - rad[i] - rad[j] - self.pair_margin
        else:
            mid = a + b
            gap = (mid[:, i] - mid[:, j]) * 0.5
            arm = np.sqrt(_dot(gap, gap)) - self._sphere_sum
            bb, pp = np.nonzero(arm < 0)
            if len(pp):
                ii, jj = i[pp], j[pp]
                arm[bb, pp] = (segment_distance(a[bb, ii], b[bb, ii], a[bb, jj], b[bb, jj]) - rad[ii] - rad[jj]
                               - self.pair_margin[pp])
        k = self.table_caps
        table = (np.minimum(a[:, k, 2], b[:, k, 2]) - self.config.table_z - rad[k] - self.table_margin)
        out = [arm, table]
        if len(self.obstacle_caps):
            k = self.obstacle_caps
            d = segment_distance(a[:, k, None], b[:, k, None], self.obstacle_a, self.obstacle_b)
            out.append((d - rad[k, None] - self.obstacle_r - self.config.margins.obstacle).reshape(len(a), -1))
        return np.concatenate(out, axis=1)

    def describe(self, index: int, clearance: float) -> Clearance:
        """The pair behind column ``index`` of :meth:`clearances`, with its distance."""
        labels = self.capsules.labels
        n_arm, n_table = len(self.pair_a), len(self.table_caps)
        if index < n_arm:
            margin = float(self.pair_margin[index])
            pair = f"{labels[self.pair_a[index]]} - {labels[self.pair_b[index]]}"
        elif index < n_arm + n_table:
            margin = float(self.table_margin[index - n_arm])
            pair = f"{labels[self.table_caps[index - n_arm]]} - table"
        else:
            k, o = divmod(index - n_arm - n_table, len(self.config.obstacles))
            margin = float(self.config.margins.obstacle)
            pair = f"{labels[self.obstacle_caps[k]]} - {self.config.obstacles[o].name}"
        return Clearance(pair, float(clearance) + margin, margin)

    def closest(self, q14) -> Clearance:
        """The checked pair nearest to its margin for one 14-D command (for logs and markers)."""
        c = self.clearances(np.asarray(q14, float)[None], exact=True)[0]
        i = int(np.argmin(c))
        return self.describe(i, c[i])


class _Chain:
    """Both arms' forward kinematics at once, as 4x4 transforms: the arms share one serial chain and differ
    only in where their base stands. Link k = link k-1 · (A_k + sin q_k · B_k + (1 - cos q_k) · C_k)
    (Rodrigues about the hinge axis through its anchor), so a batch costs ~20 numpy calls."""

    def __init__(self, links: list[Link]):
        n = len(links) // 2
        left, right = links[:n], links[n:]
        for k, (a, b) in enumerate(zip(left[1:], right[1:]), start=1):
            same = (a.parent == k - 1 and b.parent - n == a.parent and b.joint - 6 == a.joint
                    and a.joint == k - 1 and a.axis is not None and b.axis is not None
                    and np.allclose(a.pos, b.pos) and np.allclose(a.rot, b.rot)
                    and np.allclose(a.axis, b.axis) and np.allclose(a.anchor, b.anchor))
            if not same:
                raise cfg.ConfigError(f"collision.scene: the arms are not one serial chain of the joints in order "
                                      f"at link {a.name!r}")
        self.n = n
        self.base = np.stack([_transform(left[0].rot, left[0].pos), _transform(right[0].rot, right[0].pos)])
        mats = []
        for ln in left[1:]:
            x, y, z = ln.axis
            k = np.zeros((4, 4))
            k[:3, :3] = [[0, -z, y], [z, 0, -x], [-y, x, 0]]
            static = _transform(ln.rot, ln.pos)
            to, back = _transform(np.eye(3), ln.anchor), _transform(np.eye(3), -ln.anchor)
            mats.append((static, static @ to @ k @ back, static @ to @ k @ k @ back))
        self.a, self.b, self.c = (np.stack(m) for m in zip(*mats))   # (6, 4, 4) each

    def transforms(self, q12: np.ndarray) -> np.ndarray:
        """(B, 2·links, 4, 4) world transforms: left arm's links, then the right arm's."""
        q = q12.reshape(len(q12), 2, 6)
        s, c1 = np.sin(q)[..., None, None], 1.0 - np.cos(q)[..., None, None]
        local = self.a + s * self.b + c1 * self.c                  # (B, 2, 6, 4, 4)
        out = [np.broadcast_to(self.base, (len(q), 2, 4, 4))]
        for k in range(local.shape[2]):
            out.append(out[-1] @ local[:, :, k])
        return np.stack(out, 2).reshape(len(q), 2 * self.n, 4, 4)


def _transform(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, pos
    return t


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x * y).sum(-1)


def segment_distance(p1, q1, p2, q2) -> np.ndarray:
    """Distances between segments p1-q1 and p2-q2 (broadcast over leading axes; Ericson, RTCD 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, f, c, b = _dot(d1, d1), _dot(d2, d2), _dot(d2, r), _dot(d1, r), _dot(d1, d2)
    a_, e_ = np.maximum(a, _EPS), np.maximum(e, _EPS)
    # closest point on the first segment for the infinite second line (any value will do when parallel) ...
    s = np.clip((b * f - c * e) / np.maximum(a * e - b * b, _EPS), 0.0, 1.0)
    s = np.where(e > _EPS, s, np.clip(-c / a_, 0.0, 1.0))  # the second segment is a point
    t = (b * s + f) / e_
    # ... then clamp the second and recompute the first where it fell off its segment
    s = np.where(t < 0, np.clip(-c / a_, 0.0, 1.0), np.where(t > 1, np.clip((b - c) / a_, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    gap = r + d1 * s[..., None] - d2 * t[..., None]
    return np.sqrt(_dot(gap, gap))


@functools.lru_cache(maxsize=4)
def _fit_scene(scene: str, arm_prefix: tuple, arm_joints: tuple, depth: int) -> tuple[list[Link], Capsules]:
    import mujoco  # heavy: only to read the MJCF once at start

    try:
        path = gym_aloha_assets_dir() / scene
    except AssetsNotFoundError as exc:
        raise cfg.ConfigError(f"collision guard: {exc}; or set safety.collision: false to run without it") from None
    try:
        model = mujoco.MjModel.from_xml_path(str(path))
    except (ValueError, OSError) as exc:
        raise cfg.ConfigError(f"collision.scene: cannot load {path}: {str(exc).splitlines()[0]}") from None
    return _SceneReader(model, mujoco, dict(arm_prefix), list(arm_joints), depth).read()


class _SceneReader:
    """Links and fitted capsules of both arms from a compiled MjModel (identical arms are fitted once)."""

    def __init__(self, model, mujoco, arm_prefix: dict[str, str], arm_joints: list[str], depth: int):
        self.m, self.mj = model, mujoco
        self.prefix, self.joints, self.depth = arm_prefix, arm_joints, depth
        self.links: list[Link] = []
        self.caps: list[tuple[int, np.ndarray, np.ndarray, float, str]] = []
        self._fitted: dict[tuple, list] = {}

    def _name(self, kind, i) -> str:
        return self.mj.mj_id2name(self.m, kind, i) or ""

    def _quat_mat(self, q) -> np.ndarray:
        r = np.zeros(9)
        self.mj.mju_quat2Mat(r, np.asarray(q, float))
        return r.reshape(3, 3)

    def read(self) -> tuple[list[Link], Capsules]:
        for s, side in enumerate(SIDES):
            root = self.mj.mj_name2id(self.m, self.mj.mjtObj.mjOBJ_BODY, self.prefix[side])
            if root < 0:
                raise cfg.ConfigError(f"collision.arm_prefix.{side}: body {self.prefix[side]!r} is not in the scene")
            self._add_body(root, s, parent=-1, link=None, rot=np.eye(3), pos=np.zeros(3))
        joints = [ln.joint for ln in self.links if ln.axis is not None]
        if sorted(joints) != list(range(12)):
            raise cfg.ConfigError(f"collision.scene: expected the 6 arm joints {self.joints} per arm as hinges")
        link, a, b, r, labels = zip(*self.caps)
        return self.links, Capsules(np.array(link), np.array(a), np.array(b), np.array(r), list(labels))

    def _add_body(self, body: int, side: int, parent: int, link, rot, pos) -> None:
        """Walk the subtree; ``rot``/``pos`` place ``body``'s parent frame inside link ``link``'s frame."""
        m, mj = self.m, self.mj
        r = rot @ self._quat_mat(m.body_quat[body])
        p = pos + rot @ m.body_pos[body]
        short = self._name(mj.mjtObj.mjOBJ_BODY, body).split("/", 1)[-1].removesuffix("_link")
        jtypes = [int(m.jnt_type[j]) for j in range(m.body_jntadr[body], m.body_jntadr[body] + m.body_jntnum[body])]
        sweep = np.zeros((1, 3))
        if link is None or jtypes == [int(mj.mjtJoint.mjJNT_HINGE)]:   # a new link: the arm's base or a hinge
            j = int(m.body_jntadr[body])
            hinge = link is not None
            jname = self._name(mj.mjtObj.mjOBJ_JOINT, j).split("/", 1)[-1] if hinge else ""
            if hinge and jname not in self.joints:
                raise cfg.ConfigError(f"collision.scene: hinge {jname!r} is not one of the arm joints {self.joints}")
            self.links.append(Link(name="base" if not hinge else short, side=side, parent=parent,
                                   pos=p if hinge else m.body_pos[body].astype(float),
                                   rot=r if hinge else self._quat_mat(m.body_quat[body]),
                                   axis=m.jnt_axis[j].astype(float) if hinge else None,
                                   anchor=m.jnt_pos[j].astype(float) if hinge else np.zeros(3),
                                   joint=6 * side + self.joints.index(jname) if hinge else -1))
            link, parent, r, p = len(self.links) - 1, len(self.links) - 1, np.eye(3), np.zeros(3)
            short = self.links[-1].name
        elif jtypes == [int(mj.mjtJoint.mjJNT_SLIDE)]:                  # a finger: swept over its travel
            j = int(m.body_jntadr[body])
            sweep = np.outer(m.jnt_range[j], r @ m.jnt_axis[j])
        elif jtypes:
            raise cfg.ConfigError(f"collision.scene: body {short!r} has joints of a kind the guard cannot model")
        self._add_geoms(body, side, link, r, p, sweep, short)
        for child in range(m.nbody):
            if child != body and m.body_parentid[child] == body:
                self._add_body(child, side, parent, link, r, p)

    def _add_geoms(self, body: int, side: int, link: int, rot, pos, sweep, label: str) -> None:
        m, mj = self.m, self.mj
        for g in range(m.body_geomadr[body], m.body_geomadr[body] + m.body_geomnum[body]):
            if m.geom_type[g] != mj.mjtGeom.mjGEOM_MESH:
                continue  # the vx300s model is all meshes; sites and cameras carry no geometry
            mesh = int(m.geom_dataid[g])
            key = (mesh, tuple(np.round(rot, 9).ravel()), tuple(np.round(pos, 9)), tuple(np.round(sweep, 9).ravel()),
                   tuple(np.round(m.geom_pos[g], 9)), tuple(np.round(m.geom_quat[g], 9)))
            if key not in self._fitted:
                self._fitted[key] = fit_capsules(self._primitives(g, rot, pos, sweep), self.depth)
            for a, b, r in self._fitted[key]:
                self.caps.append((link, a, b, r, f"{SIDES[side]}/{label}"))

    def _primitives(self, g: int, rot, pos, sweep) -> np.ndarray:
        """The mesh's triangles in the link frame (N, 3, 3), or their sweeps (N, 6, 3) for a sliding body."""
        m = self.m
        mesh = int(m.geom_dataid[g])
        v = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]].astype(float)
        f = m.mesh_face[m.mesh_faceadr[mesh]:m.mesh_faceadr[mesh] + m.mesh_facenum[mesh]]
        rg = rot @ self._quat_mat(m.geom_quat[g])
        v = v @ rg.T + (pos + rot @ m.geom_pos[g])
        tris = _subdivide(v[f], max_edge=0.01)
        return np.concatenate([tris + s for s in sweep], axis=1)


class CollisionGuard:
    """The SafetyFilter's collision stage. ``limit(target, previous)`` returns a command c on the joint-space
    segment from ``previous`` to ``target`` (arm joints; grippers pass, they move no checked capsule) with

        clearance_k(c) >= min(0, clearance_k(previous))   for every checked pair k   (to 1e-9 m)

    i.e. no pair inside its margin unless ``previous`` already had it there, and such a pair does not get
    closer. ``target`` itself when it qualifies; else, of the points 1/8, 2/8 .. 7/8 along the segment (one
    batched evaluation), the last one before the first that does not qualify; else ``previous``'s arm joints
    (hold). A tick costs one clearance evaluation (``previous``'s is cached from the tick before), or two
    when the step is shortened. An 1/8 grid loses at most 1/8 of a step (< 8 mrad at the π rad/s cap);
    the next tick closes in again.
    """

    GRID = 8
    TOLERANCE = 1e-9  # m: the same pose computed in another batch may differ in the last bits

    def __init__(self, model: CollisionModel):
        self.model = model
        self._last: tuple[bytes, np.ndarray] | None = None  # the last command returned and its clearances

    def _clearance_of(self, q: np.ndarray) -> np.ndarray:
        if self._last is not None and self._last[0] == q.tobytes():
            return self._last[1]
        return self.model.clearances(q[None])[0]

    def allowed(self, command, previous) -> bool:
        """The guarantee for one step (what the tests assert)."""
        m = self.model
        floor = np.minimum(m.clearances(np.asarray(previous, float)[None], exact=True)[0], 0.0) - self.TOLERANCE
        return bool(np.all(m.clearances(np.asarray(command, float)[None], exact=True)[0] >= floor))

    def limit(self, target: np.ndarray, previous: np.ndarray) -> GuardResult:
        prev = np.asarray(previous, float)
        t = np.asarray(target, float)
        floor = np.minimum(self._clearance_of(prev), 0.0) - self.TOLERANCE
        c_target = self.model.clearances(t[None])[0]
        if np.all(c_target >= floor):
            self._last = (t.tobytes(), c_target)
            return GuardResult(t, False)
        worst = int(np.argmin(c_target - floor))
        closest = self.model.describe(worst, c_target[worst])
        delta = np.zeros(14)
        delta[ARM_INDICES] = (t - prev)[ARM_INDICES]
        alphas = np.arange(1, self.GRID) / self.GRID
        qs = prev + alphas[:, None] * delta
        qs[:, 6], qs[:, 13] = t[6], t[13]
        cs = self.model.clearances(qs)
        ok = np.all(cs >= floor, axis=1)
        clear = int(np.argmin(ok)) if not ok.all() else len(ok)   # points before the first blocked one
        keep = (alphas[clear - 1], qs[clear - 1], cs[clear - 1]) if clear else None
        if keep is None:  # hold the arm joints; the grippers move no capsule
            q = prev.copy()
            q[6], q[13] = t[6], t[13]
            keep = (0.0, q, self._clearance_of(prev))
        self._last = (keep[1].tobytes(), keep[2])
        return GuardResult(keep[1], True, float(keep[0]), closest)
