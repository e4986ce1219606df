"""Hardware backends behind one small interface (base.Backend); chosen by executor.yaml ``backend``."""
