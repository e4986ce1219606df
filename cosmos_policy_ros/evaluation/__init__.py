"""Seeded evaluation on the simulated ALOHA, in one process or through the ROS node graph.

`report` holds what both produce (EpisodeResult, EvalResult, the Wilson interval, PNG strips),
`in_process` runs a policy function against SimAloha directly, `graph` runs the same seeds
through the running node graph (sim -> policy/planner -> executor -> sim), `cli` is `cosmos-aloha eval`.
"""
