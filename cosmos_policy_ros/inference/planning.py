"""Best-of-N planning score core (spec section 8): candidates -> futures -> values -> aggregate -> argmax.

Upstream loops over candidates with batch-1 passes (8 x 61 DiT calls). Here each stage is one
batched sampler call over all its samples (per-sample seeds and step counts), so the same seeds
give the same choice with far fewer, larger DiT calls. The planner node only wraps `plan`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .engine import PolicyEngine, PreparedState
from .value import aggregate_values


@dataclass(frozen=True)
class PlanConfig:
    num_candidates: int = 8
    base_seed: int = 195
    action_steps: int | None = None                  # None -> model config
    world_steps: tuple[int, ...] = (1, 3, 5)          # one world-model sample per entry
    value_steps: tuple[int, ...] = (1, 2, 3, 4, 5)    # value samples per future sample
    value_mode: str = "v_sprime"
    aggregation: str = "majority_mean"
    threshold: float = 0.05
    decode_images: bool = False


@dataclass
class PlanResult:
    best: int                               # index of the chosen candidate
    actions: np.ndarray                     # (chunk, dim) of the chosen candidate, robot units
    scores: np.ndarray                      # (N,) aggregated value per candidate
    values: np.ndarray                      # (N, K, M) raw value predictions
    all_actions: np.ndarray                 # (N, chunk, dim)
    seeds: list[int]
    future_images: dict[str, np.ndarray] | None = None   # chosen candidate, mean over world samples
    timings: dict[str, float] = field(default_factory=dict)


def choose(scores: Sequence[float]) -> int:
    """Upstream rule: keep candidate 0 (base seed) unless another is strictly better."""
    scores = np.asarray(scores)
    best = 0
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:
            best = i
    return best


def plan(engine: PolicyEngine, obs: Mapping | PreparedState, cfg: PlanConfig = PlanConfig()) -> PlanResult:
    """Score N policy candidates with the world model and value function; return the best chunk."""
    t0 = time.perf_counter()
    state = obs if isinstance(obs, PreparedState) else engine.prepare(obs)
    N, K, M = cfg.num_candidates, len(cfg.world_steps), len(cfg.value_steps)
    seeds = [cfg.base_seed + q for q in range(N)]
    engine.synchronize()
    t1 = time.perf_counter()

    # stage 1: N action samples, one batch
    act_lat = engine.sample_actions(state, seeds, cfg.action_steps)
    all_actions, _ = engine.actions_from(act_lat)
    t2 = time.perf_counter()

    # stage 2: N*K world-model samples; candidate q member k uses seed base+q+k, steps world_steps[k]
    w_idx = [q for q in range(N) for _ in range(K)]
    w_seeds = [seeds[q] + k for q in range(N) for k in range(K)]
    w_steps = [cfg.world_steps[k] for _ in range(N) for k in range(K)]
    ctx = state.context
    futures = engine.predict_future(state, w_seeds, w_steps, action_latents=act_lat[w_idx])
    engine.synchronize()
    t3 = time.perf_counter()

    # stage 3: N*K*M value samples; member m of future (q,k) uses seed base+q+m, steps value_steps[m]
    v_idx = [j for j in range(N * K) for _ in range(M)]
    v_seeds = [seeds[q] + m for q in range(N) for _ in range(K) for m in range(M)]
    v_steps = [cfg.value_steps[m] for _ in range(N * K) for m in range(M)]
    values = engine.predict_value(futures[v_idx], ctx, v_seeds, v_steps, cfg.value_mode).reshape(N, K, M)
    t4 = time.perf_counter()

    scores = np.array([aggregate_values(values[q], cfg.aggregation, cfg.threshold) for q in range(N)])
    best = choose(scores)
    result = PlanResult(best=best, actions=all_actions[best], scores=scores, values=values,
                        all_actions=all_actions, seeds=seeds)
    if cfg.decode_images:
        imgs = engine.decode_future_images(futures[best * K:(best + 1) * K], state.clean)
        result.future_images = {c: np.round(v.astype(np.float64).mean(0)).astype(np.uint8) for c, v in imgs.items()}
    result.timings = {"encode_s": t1 - t0, "actions_s": t2 - t1, "world_s": t3 - t2, "value_s": t4 - t3,
                      "total_s": time.perf_counter() - t0}
    return result
