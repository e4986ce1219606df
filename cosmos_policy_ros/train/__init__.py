"""Fine-tuning loop for Cosmos Policy: policy / world-model / value objectives over the latent layout (issue 8)."""
