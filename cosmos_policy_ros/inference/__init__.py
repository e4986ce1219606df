"""Inference on top of the model core: PolicyEngine (engine), best-of-N scoring (planning),
value aggregation (value), dataset-statistics normalisation (normalization), image preprocessing."""
