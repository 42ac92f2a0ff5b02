"""superfactory.agent — one agent per factory: registers the site with the control plane, runs and stops the
job processes it is assigned, reports state, progress and committed checkpoints, and survives failures.

Modules: ``daemon`` (the agent loop), ``executor`` (process groups; the interface for Ray/Slurm), ``runtime``
(what a job process receives and reports), ``launch`` (assignment → process), ``examples/mlp`` (the built-in
training job), ``fleet``/``chaos``/``drills`` (a local fleet, fault injection, recovery measurements). See
``docs/agents.md``.
"""
