"""superfactory: control plane and digital twin for fleets of AI factories.

One policy engine in two worlds: the twin (``superfactory simulate``) replays a fleet in simulated time,
the live control plane runs the same policies against factory agents. See ``DESIGN`` notes in the README.
"""

__version__ = "0.1.0"
