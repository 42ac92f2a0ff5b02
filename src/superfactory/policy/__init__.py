"""Pure decisions: a policy maps an immutable :class:`~superfactory.domain.fleet.FleetSnapshot` (and an
explicitly seeded random generator) to a :class:`~superfactory.domain.fleet.Plan`.

Policies never read clocks, files or the network, and never import the twin or the live plane (enforced by
import-linter). Add a policy by dropping a module in this package that defines a class decorated with
:func:`superfactory.policy.registry.register`; nothing else needs to change.
"""
