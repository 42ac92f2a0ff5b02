"""The live control plane (not built yet): API, store, scheduler service and factory agents.

Reserved so the layering contracts in ``pyproject.toml`` already place it beside ``sim`` (the twin): it will
implement the same loop ports (:mod:`superfactory.loop.ports`) against wall-clock time, a database and real
factory agents, and run the same registered policies. No issue has asked for it yet; nothing here runs.
"""
