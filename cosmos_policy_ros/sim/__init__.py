"""Simulated ALOHA (MuJoCo): world, tasks with staged success, cameras, scripted demonstrator.

Importing a submodule that needs mujoco first chooses a headless GL backend (see ``sim.gl``).
"""
