"""Sweeps: many twin runs over scenarios, scenario fields, policies, policy parameters and seeds, on Ray or on
local processes, into one resumable Parquet table, with confidence intervals over seeds.

- :mod:`.spec`     what to sweep (flags or a YAML file) and how the grid expands
- :mod:`.cells`    a cell's coordinates, its content-hashed id, scenario field overrides
- :mod:`.worker`   one batch of cells in one fresh process
- :mod:`.runners`  Ray (local on demand, or a cluster) and local processes
- :mod:`.engine`   planning, resuming, adaptive batching, failures, progress
- :mod:`.store`    the journal and ``results.parquet``
- :mod:`.stats`    means, Student-t intervals, paired differences
- :mod:`.report`   the HTML report (each metric against each swept parameter, with intervals)
- :mod:`.compare`  ``superfactory compare --seeds``

This package sits above the twin: it imports scenario, sim, observe and the policy registry; nothing below it
imports it (import-linter contract in pyproject.toml).
"""
