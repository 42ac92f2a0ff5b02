"""The twin: a deterministic discrete-event simulation of the fleet that runs the real policies."""
