"""The live scheduler: the decision loop with a wall clock, a view built from the store and an actuator that
writes assignments (see :mod:`.service`)."""
