"""What the collision guard sees, as drawing primitives: capsules, margins, the closest pair, gripper paths.

Why: the guard (robot/collision.py) shortens steps for reasons an operator cannot see in the camera images;
drawn in RViz next to the robot models, a held step explains itself. This module is plain numpy (no ROS) so
it is tested without a graph; nodes/safety_viz_node.py turns each ``Shape`` into a visualization_msgs/Marker.

    ns "capsules"   the checked capsules at the measured joints (left arm blue, right orange), 2 shapes each
                    (cylinder + end spheres)
    ns "margins"    each capsule swollen by the largest margin it keeps to the other arm (translucent), for
                    capsules with a margin > 0: a solid capsule inside a shell of the other arm is close to
                    (not necessarily inside) its pair's margin; the closest-pair text says exactly
    ns "table"      the table top (z = table_z; drawn 1.6 x 1.0 m, the guard checks the whole plane) and
                    the table margin as a translucent slab above it: a solid capsule inside it is too low
    ns "obstacles"  obstacle capsules, and their shells swollen by the obstacle margin
    ns "closest"    the checked pair nearest its margin: a line between the two surfaces and the text
                    "right/gripper - table at 3.2 cm (margin 1.0 cm)"; green, amber within 2 cm of the
                    margin, red inside it
    ns "chunk"      each action of the latest chunk through forward kinematics: the gripper tip's path per
                    arm (line strip)
    ns "plan"       the planner's chosen chunk coloured by its score among the candidates (red worst, green
                    best) and every candidate's score as text. PlanResult carries the candidates' scores
                    but not their actions, so only the chosen one can be drawn.

The gripper tip is the fingers' reach along the gripper's axis: the point on the line from the gripper
link's origin through the finger capsules' middle, as far out as the finger capsules reach.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cosmos_policy_ros.robot.collision import SIDES, Clearance, CollisionModel

RGBA = tuple[float, float, float, float]
ARM_COLORS: tuple[RGBA, RGBA] = ((0.25, 0.55, 1.0, 0.9), (1.0, 0.6, 0.2, 0.9))   # left, right
SHELL_ALPHA = 0.15
TABLE_COLOR: RGBA = (0.55, 0.5, 0.45, 0.6)
TABLE_MARGIN_COLOR: RGBA = (1.0, 0.2, 0.2, 0.15)
OBSTACLE_COLOR: RGBA = (0.6, 0.6, 0.6, 0.9)
# m: the drawn table top (the guard's table is the whole plane z = table_z) and its thickness
TABLE_SIZE = (1.6, 1.0)
TABLE_THICKNESS = 0.01
# m: the closest-pair line turns amber when its distance is within this of the pair's margin
WARN_CLEARANCE = 0.02
LINE_WIDTH = 0.004
TEXT_HEIGHT = 0.03

# every namespace a shape may have (rviz/aloha.rviz lists them, to switch each on or off)
NAMESPACES = ("capsules", "margins", "table", "obstacles", "closest", "chunk", "plan")
ShapeKind = Literal["cylinder", "sphere_list", "cube", "line_list", "line_strip", "text"]


@dataclass
class Shape:
    """One drawing primitive, in the world frame (metres); one RViz marker."""
    ns: str
    id: int
    kind: ShapeKind
    color: RGBA
    # cylinder: (diameter, diameter, length); sphere_list: (d, d, d); cube: sizes; lines: (width, 0, 0);
    # text: (0, 0, letter height)
    scale: tuple[float, float, float]
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)   # quaternion x, y, z, w
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    text: str = ""


def closest_points(p1, q1, p2, q2) -> tuple[np.ndarray, np.ndarray]:
    """The closest points of segments p1-q1 and p2-q2 (one pair; Ericson, RTCD 5.1.9)."""
    p1, q1, p2, q2 = (np.asarray(x, float) for x in (p1, q1, p2, q2))
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, f = d1 @ d1, d2 @ d2, d2 @ r
    if a <= 1e-12 and e <= 1e-12:
        return p1, p2
    if a <= 1e-12:
        return p1, p2 + np.clip(f / e, 0.0, 1.0) * d2
    c = d1 @ r
    if e <= 1e-12:
        return p1 + np.clip(-c / a, 0.0, 1.0) * d1, p2
    b = d1 @ d2
    den = a * e - b * b
    s = np.clip((b * f - c * e) / den, 0.0, 1.0) if den > 1e-12 else 0.0
    t = (b * s + f) / e
    if t < 0.0:
        t, s = 0.0, np.clip(-c / a, 0.0, 1.0)
    elif t > 1.0:
        t, s = 1.0, np.clip((b - c) / a, 0.0, 1.0)
    return p1 + s * d1, p2 + t * d2


def capsule_shapes(ns: str, first_id: int, a, b, radius: float, color: RGBA) -> list[Shape]:
    """A capsule as a cylinder along a-b and a sphere at each end (RViz has no capsule marker)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = 2.0 * float(radius)
    axis = b - a
    length = float(np.linalg.norm(axis))
    ends = Shape(ns, first_id + 1, "sphere_list", color, (d, d, d), points=np.stack([a, b]))
    body = Shape(ns, first_id, "cylinder", color, (d, d, length), position=tuple((a + b) / 2),
                 orientation=_z_to(axis / length if length > 1e-9 else np.array([0.0, 0.0, 1.0])))
    return [body, ends]


def _z_to(u: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) turning the z axis onto unit vector u (a cylinder marker's axis is z)."""
    w = 1.0 + u[2]
    if w < 1e-9:  # u = -z: half a turn about x
        return (1.0, 0.0, 0.0, 0.0)
    q = np.array([-u[1], u[0], 0.0, w])
    q /= np.linalg.norm(q)
    return tuple(float(x) for x in q)


def score_color(score: float, scores) -> RGBA:
    """Red (the worst candidate) .. green (the best); grey when there is nothing to compare."""
    s = np.asarray(scores, float)
    s = s[np.isfinite(s)]
    if not np.isfinite(score) or len(s) == 0:
        return (0.7, 0.7, 0.7, 1.0)
    lo, hi = float(s.min()), float(s.max())
    x = 1.0 if hi - lo < 1e-12 else (score - lo) / (hi - lo)
    return (float(1.0 - x), float(0.3 + 0.6 * x), 0.2, 1.0)


class SafetyMarkers:
    """Shapes for one CollisionModel: ``scene(q14)``, ``chunk_paths(actions)``, ``plan(actions, scores, i)``."""

    def __init__(self, model: CollisionModel):
        self.model = model
        caps = model.capsules
        cross = np.zeros(len(caps.radius))
        for i, j, m in zip(model.pair_a, model.pair_b, model.pair_margin):
            cross[i], cross[j] = max(cross[i], m), max(cross[j], m)
        # m, per capsule: the largest margin it keeps to a capsule of the other arm (the shell's swelling)
        self.shell_margin = cross
        self.tip_link, self.tip_local = self._gripper_tips()

    def _gripper_tips(self) -> tuple[list[int], list[np.ndarray]]:
        """Per arm: the gripper link and the tip point in its frame (see the module docstring)."""
        m, caps = self.model, self.model.capsules
        links, points = [], []
        for side in SIDES:
            k = [i for i, lab in enumerate(caps.labels)
                 if lab.startswith(f"{side}/") and lab.split("/", 1)[1] in m.config.finger_links]
            link = int(caps.link[k[0]])
            ends = np.concatenate([caps.a[k], caps.b[k]])
            axis = ends.mean(0) / np.linalg.norm(ends.mean(0))
            reach = float(np.max(np.concatenate([caps.a[k] @ axis, caps.b[k] @ axis]) + np.tile(caps.radius[k], 2)))
            links.append(link)
            points.append(reach * axis)
        return links, points

    # ---- the measured state -----------------------------------------------------------------
    def scene(self, q14) -> list[Shape]:
        """Capsules, margins, table, obstacles and the closest pair at joint state ``q14``."""
        q = np.asarray(q14, float)[None]
        a, b = self.model.world_capsules(q)
        caps = self.model.capsules
        out: list[Shape] = []
        for k, label in enumerate(caps.labels):
            color = ARM_COLORS[SIDES.index(label.split("/", 1)[0])]
            out += capsule_shapes("capsules", 2 * k, a[0, k], b[0, k], caps.radius[k], color)
            if self.shell_margin[k] > 0:
                out += capsule_shapes("margins", 2 * k, a[0, k], b[0, k], caps.radius[k] + self.shell_margin[k],
                                      (*color[:3], SHELL_ALPHA))
        return out + self.fixed() + self.closest(q[0])

    def fixed(self) -> list[Shape]:
        """The table, its margin slab and the obstacles (they do not move)."""
        m = self.model
        z = m.config.table_z
        centre = np.mean([ln.pos for ln in m.links if ln.axis is None], axis=0)
        out = [Shape("table", 0, "cube", TABLE_COLOR, (*TABLE_SIZE, TABLE_THICKNESS),
                     position=(float(centre[0]), float(centre[1]), z - TABLE_THICKNESS / 2))]
        margin = m.config.margins.table
        if margin:
            out.append(Shape("table", 1, "cube", TABLE_MARGIN_COLOR, (*TABLE_SIZE, margin),
                             position=(float(centre[0]), float(centre[1]), z + margin / 2)))
        shell = m.config.margins.obstacle or 0.0
        for i, ob in enumerate(m.config.obstacles):
            out += capsule_shapes("obstacles", 4 * i, ob.a, ob.b, ob.radius, OBSTACLE_COLOR)
            if shell > 0:
                out += capsule_shapes("obstacles", 4 * i + 2, ob.a, ob.b, ob.radius + shell,
                                      (*OBSTACLE_COLOR[:3], SHELL_ALPHA))
        return out

    def closest_pair(self, q14) -> tuple[Clearance, np.ndarray, np.ndarray] | None:
        """The checked pair nearest its margin (as ``CollisionModel.closest``), a point on its first surface and
        one on the second (the table under the capsule's lowest end); None when no pair is checked."""
        m = self.model
        q = np.asarray(q14, float)
        c = m.clearances(q[None], exact=True)[0]
        if len(c) == 0:
            return None
        i = int(np.argmin(c))
        info = m.describe(i, c[i])
        a, b = m.world_capsules(q[None])
        a, b, rad = a[0], b[0], m.capsules.radius
        n_arm, n_table = len(m.pair_a), len(m.table_caps)
        if i < n_arm:
            k, j = m.pair_a[i], m.pair_b[i]
            p, r = closest_points(a[k], b[k], a[j], b[j])
            p, r = _surfaces(p, r, rad[k], rad[j])
        elif i < n_arm + n_table:
            k = m.table_caps[i - n_arm]
            low = a[k] if a[k, 2] <= b[k, 2] else b[k]
            p = low - np.array([0.0, 0.0, rad[k]])
            r = np.array([low[0], low[1], m.config.table_z])
        else:
            k, o = divmod(i - n_arm - n_table, len(m.config.obstacles))
            k = m.obstacle_caps[k]
            p, r = closest_points(a[k], b[k], m.obstacle_a[o], m.obstacle_b[o])
            p, r = _surfaces(p, r, rad[k], m.obstacle_r[o])
        return info, p, r

    def closest(self, q14) -> list[Shape]:
        """The closest pair as a line between the two surfaces and its distance as text."""
        found = self.closest_pair(q14)
        if found is None:
            return []
        info, p, r = found
        clearance = info.distance - info.margin
        color = (1.0, 0.1, 0.1, 1.0) if clearance < 0 else (
            (1.0, 0.75, 0.0, 1.0) if clearance < WARN_CLEARANCE else (0.2, 0.9, 0.2, 1.0))
        mid = (p + r) / 2
        return [Shape("closest", 0, "line_list", color, (LINE_WIDTH, 0.0, 0.0), points=np.stack([p, r])),
                Shape("closest", 1, "text", color, (0.0, 0.0, TEXT_HEIGHT),
                      position=(float(mid[0]), float(mid[1]), float(mid[2]) + 0.04), text=str(info))]

    # ---- chunks and plans ---------------------------------------------------------------------
    def gripper_tips(self, actions) -> np.ndarray:
        """(T, 2, 3) world positions of the left and right gripper tips for 14-D actions (T, 14)."""
        rot, pos = self.model.link_poses(np.atleast_2d(np.asarray(actions, float)))
        return np.stack([rot[:, k] @ local + pos[:, k] for k, local in zip(self.tip_link, self.tip_local)], axis=1)

    def chunk_paths(self, actions, ns: str = "chunk", colors: tuple[RGBA, RGBA] = ARM_COLORS,
                    width: float = LINE_WIDTH) -> list[Shape]:
        """Each arm's gripper-tip path through the chunk's actions: one line strip per arm."""
        tips = self.gripper_tips(actions)
        return [Shape(ns, s, "line_strip", colors[s], (width, 0.0, 0.0), points=tips[:, s]) for s in range(2)]

    def plan(self, actions, scores, chosen: int, fell_back: bool = False) -> list[Shape]:
        """The chosen chunk's paths coloured by its score among the candidates, and the scores as text."""
        scores = np.asarray(scores, float)
        score = float(scores[chosen]) if 0 <= chosen < len(scores) else float("nan")
        color = score_color(score, scores)
        out = self.chunk_paths(actions, ns="plan", colors=(color, color), width=2 * LINE_WIDTH)
        listed = " ".join(f"[{v:.2f}]" if i == chosen else f"{v:.2f}" for i, v in enumerate(scores))
        what = "fell back to the direct policy chunk" if fell_back else f"chose {chosen}"
        top = out[0].points[-1] if len(out[0].points) else np.zeros(3)
        out.append(Shape("plan", 2, "text", color, (0.0, 0.0, TEXT_HEIGHT),
                         position=(float(top[0]), float(top[1]), float(top[2]) + 0.06),
                         text=f"best of {len(scores)}: {listed} ({what})"))
        return out


def _surfaces(p: np.ndarray, r: np.ndarray, rp: float, rr: float) -> tuple[np.ndarray, np.ndarray]:
    """Closest axis points p, r of two capsules moved out to their surfaces (kept as they are when overlapping)."""
    d = r - p
    n = float(np.linalg.norm(d))
    if n <= rp + rr:
        return p, r
    u = d / n
    return p + rp * u, r - rr * u
