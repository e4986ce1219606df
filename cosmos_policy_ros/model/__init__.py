"""Cosmos Policy model core in plain PyTorch (no ROS imports).

config (YAML -> dataclasses), dit (Cosmos-Predict2 DiT), vae (Wan2.1), rope, layout (latent frames,
inject/readout, condition masks), precondition (rectified-flow denoiser, training loss pieces),
sampler (seeded 2ab), text (T5 embedding store), checkpoint (strict loading), policy_model (all
of it together).
"""
