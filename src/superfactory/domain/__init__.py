"""Value types of the fleet: accelerators, factories and their topology, WAN links, jobs, signals, events.

Pure: nothing here does I/O, reads a clock or draws random numbers. Every type is an immutable value
(frozen, slotted dataclass) with units in its field names.
"""
