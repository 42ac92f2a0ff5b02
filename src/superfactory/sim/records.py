"""Frozen domain records built without their dataclass ``__init__`` (issue 12: the twin's hot paths).

A fleet-year emits ~2.7 M :class:`~superfactory.domain.events.Event` objects (mostly ``CheckpointCommitted``,
then hourly ``Metered`` rows) and builds millions of snapshot records (:class:`~superfactory.domain.fleet.JobView`
for every running job at every geo decision, :class:`~superfactory.domain.fleet.FactoryState`,
:class:`~superfactory.domain.fleet.FleetSnapshot`). They are frozen, slotted dataclasses: ``__init__`` sets each
field through ``object.__setattr__`` (~0.7 us a field on these machines). Here the same slots are filled on an
instance of a *shell* class — a plain class with exactly the record's slots, so the same memory layout — which
then becomes the record by assigning ``__class__`` (Python allows this between classes with the same slots):
~0.1 us a field. The result *is* the record: the same type, fields, equality, hash, pickle and repr as the
constructor's (``tests/unit/sim/test_fast_event.py`` checks each builder against the constructor).

Only records this is exact for are accepted (:func:`record_builder` checks at import): frozen slotted
dataclasses whose slots are their fields in order, every field an ``__init__`` argument, no ``__post_init__``
(which the constructor would run and a builder would not) and no base class. :func:`new_event` is the event's
builder, written out with the constructor's defaults; the generated builders take every field, in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import FactoryState, FleetSnapshot, JobView
from superfactory.domain.outcome import ActionOutcome

_R = TypeVar("_R")

__all__ = ["EventShell", "committed_event", "new_event", "new_factory_state", "new_job_view", "new_outcome",
           "new_snapshot", "record_builder"]

_FIELDS = ("time_s", "kind", "job", "factory", "node", "cause", "value", "action")
_COMMITTED = EventKind.CHECKPOINT_COMMITTED


class _EventShell:
    """``Event``'s slot layout without its frozen ``__setattr__``: filled, then turned into an ``Event``."""

    __slots__ = ("time_s", "kind", "job", "factory", "node", "cause", "value", "action")  # noqa: RUF023 (Event's order)
    time_s: int
    kind: EventKind
    job: str
    factory: str
    node: int
    cause: str
    value: float
    action: str


#: the shell itself, for a hot path that fills an event in line (sim/checkpoints.py): ``object.__new__(EventShell)``,
#: every slot assigned, then ``__class__ = Event``, exactly as :func:`committed_event` does
EventShell = _EventShell

_new_object = object.__new__


def new_event(time_s: int, kind: EventKind, job: str = "", factory: str = "", node: int = -1, cause: str = "",
              value: float = 0.0, action: str = "") -> Event:
    """``Event(time_s, kind, job, factory, node, cause, value, action)``: the same (equal) object, with the same
    defaults and no conversion of any argument, built ~6x faster (module docstring)."""
    e = _new_object(_EventShell)
    e.time_s = time_s
    e.kind = kind
    e.job = job
    e.factory = factory
    e.node = node
    e.cause = cause
    e.value = value
    e.action = action
    e.__class__ = Event  # type: ignore[assignment]
    return e  # type: ignore[return-value]


def committed_event(time_s: int, job: str, factory: str, progress_s: float) -> Event:
    """``Event(time_s, CHECKPOINT_COMMITTED, job, factory, -1, "", progress_s)`` (:func:`new_event`), the
    checkpoint chain's event (~2 M a fleet-year)."""
    e = _new_object(_EventShell)
    e.time_s = time_s
    e.kind = _COMMITTED
    e.job = job
    e.factory = factory
    e.node = -1
    e.cause = ""
    e.value = progress_s
    e.action = ""
    e.__class__ = Event  # type: ignore[assignment]
    return e  # type: ignore[return-value]


def _check() -> None:
    if (tuple(f.name for f in dataclasses.fields(Event)) != _FIELDS or Event.__dict__.get("__slots__") != _FIELDS
            or _EventShell.__slots__ != _FIELDS
            or "__post_init__" in Event.__dict__ or Event.__bases__ != (object,)):
        raise ImportError("sim/records.py builds domain Events slot by slot; Event's fields or slots changed")
    probe = (7, EventKind.METERED, "j", "f", 3, "c", 1.5, "a")
    got, want = new_event(*probe), Event(*probe)
    if type(got) is not Event or got != want or hash(got) != hash(want) or got.line() != want.line():
        raise ImportError("sim/records.py: an event built slot by slot differs from Event's constructor")


_check()


def record_builder(cls: type[_R]) -> Callable[..., _R]:
    """A function ``build(field1, field2, ...)`` (every field of ``cls``, positionally, in order) that returns the
    record ``cls(field1, field2, ...)`` would, built slot by slot (module docstring). Raises TypeError for a
    class this would not be exact for."""
    name = cls.__name__
    fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
    names = tuple(f.name for f in fields)
    params = cls.__dict__.get("__dataclass_params__")
    if (not names or params is None or not params.frozen or cls.__dict__.get("__slots__") != names
            or len(cls.__dict__.get("__dataclass_fields__", ())) != len(names) or not all(f.init for f in fields)
            or any("__post_init__" in c.__dict__ for c in cls.__mro__) or cls.__bases__ != (object,)):
        raise TypeError(f"{name} is not a frozen slotted dataclass whose slots are its init fields (record_builder)")
    shell = type(f"_{name}Shell", (), {"__slots__": names, "__module__": __name__})
    args = ", ".join(names)
    body = "".join(f"    r.{n} = {n}\n" for n in names)
    src = f"def build_{name}({args}):\n    r = _new(_shell)\n{body}    r.__class__ = _cls\n    return r\n"
    namespace: dict[str, Any] = {"_new": _new_object, "_shell": shell, "_cls": cls}
    exec(src, namespace)  # field names of a dataclass (identifiers), as dataclasses itself generates __init__
    build: Callable[..., _R] = namespace[f"build_{name}"]
    build.__doc__ = f"``{name}({args})``, built slot by slot (sim/records.py)."
    return build


#: ``JobView(job, factory_id, nodes, progress_s, waiting_since_s, last_factory_id, last_nodes, interrupted,
#: committed_progress_s, state, carbon_spent_tco2)``
new_job_view = record_builder(JobView)
#: ``FactoryState(factory_id, up, node_status, price_usd_per_mwh, carbon_g_per_kwh, it_power_w, link_probes)``
new_factory_state = record_builder(FactoryState)
#: ``FleetSnapshot(now_s, factories, states, links, pending, running, price_history, carbon_history, inference,
#: wan)``
new_snapshot = record_builder(FleetSnapshot)
#: ``ActionOutcome(action_id, status, job_id, factory_id, reason, time_s)``
new_outcome = record_builder(ActionOutcome)
