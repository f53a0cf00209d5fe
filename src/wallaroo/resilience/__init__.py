"""Resilience: checkpoints of state, source positions and sink offsets; recovery from them."""
