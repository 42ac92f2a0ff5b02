"""When a preemption pays, and how often one may happen (pure; used by the ``gang`` policy).

A preemption trades the victims' time for the preemptor's. It is worth doing only when

    gain = value(preemptor) x GPUs(preemptor) x (seconds it starts sooner)
    cost = sum over victims of value(victim) x GPUs(victim) x (drain + restart + work since its last durable
           checkpoint that the drain does not keep + the wait it is sent back to)

is positive with a margin: ``gain > margin x cost``. ``value`` weighs a GPU-second by priority
(``priority_base ** priority``), so a higher-priority gang may displace more GPUs of lower-priority work, but not
unboundedly. The victim's expected wait is taken as the time the preemptor would otherwise have waited (the two
swap places in the queue), capped by the victim's remaining run.

Rate limits (:class:`PreemptionLedger`): at most ``max_per_day`` victims per factory in any rolling 24 h (the
``gang`` policy counts its evacuations off degraded domains here too), and a
job that was preempted is not a victim again for ``victim_cooldown_s``. The ledger is policy state rebuilt only
from actions the policy emitted; a preemption whose outcome is not in force is forgotten (``forget``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from superfactory.domain.fleet import JobView

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class PreemptionCosts:
    """Knobs of the cost/benefit rule. ``horizon_s`` caps the assumed wait of a gang with no reservation."""

    priority_base: float = 4.0
    margin: float = 1.5
    horizon_s: float = 6 * 3600.0
    drain_keeps_progress: bool = True

    def value(self, priority: int) -> float:
        """Weight of one GPU-second at ``priority``."""
        return float(self.priority_base) ** priority

    def overhead_s(self, v: JobView) -> float:
        """Wall seconds a victim loses to being stopped: final checkpoint, restart, uncheckpointed work.

        The twin drains a victim with a final checkpoint (nothing lost); a world that cannot is charged the
        progress since its last durable checkpoint."""
        ck = v.job.checkpoint
        unsaved_s = 0.0 if self.drain_keeps_progress else max(0.0, v.progress_s - v.committed_progress_s)
        return ck.blocking_s + ck.async_write_s + v.job.recovery.restart_s + unsaved_s

    def gain(self, preemptor: JobView, sooner_s: float, priority: int | None = None) -> float:
        """Priority-weighted GPU-seconds the preemptor gains by starting ``sooner_s`` earlier (valued at
        ``priority`` if given: a starving gang the policy promotes, else at its own)."""
        p = preemptor.job.priority if priority is None else priority
        return self.value(p) * preemptor.job.gpus * max(0.0, sooner_s)

    def cost(self, victim: JobView, displaced_s: float, remaining_s: float) -> float:
        """Priority-weighted GPU-seconds a victim loses: overhead plus the wait it is sent back to."""
        wait_s = min(max(0.0, displaced_s), max(0.0, remaining_s))
        return self.value(victim.job.priority) * victim.job.gpus * (self.overhead_s(victim) + wait_s)

    def pays(self, preemptor: JobView, victims: list[tuple[JobView, float]], sooner_s: float,
             priority: int | None = None) -> tuple[bool, str]:
        """Whether preempting ``victims`` (each with its remaining run, s) pays; and a sentence saying why.
        ``priority``: the preemptor's value class if not its own (see :meth:`gain`)."""
        sooner_s = min(sooner_s, self.horizon_s)
        g = self.gain(preemptor, sooner_s, priority)
        c = sum(self.cost(v, sooner_s, rem) for v, rem in victims)
        ok = g > self.margin * c
        why = (f"preemption gain {g / 3600:.0f} weighted GPU-h {'>' if ok else '<='} {self.margin:g} x cost "
               f"{c / 3600:.0f} (starts {sooner_s / 3600:.1f} h sooner, {len(victims)} victim(s))")
        return ok, why


@dataclass(slots=True)
class PreemptionLedger:
    """Rate limits: victims per factory per rolling day, and a cooldown per victim."""

    max_per_day: int = 16
    victim_cooldown_s: int = 12 * 3600
    _by_factory: dict[str, deque[tuple[int, str]]] = field(default_factory=dict)
    _last_of_job: dict[str, int] = field(default_factory=dict)

    def _window(self, factory_id: str, now_s: int) -> deque[tuple[int, str]]:
        q = self._by_factory.setdefault(factory_id, deque())
        while q and q[0][0] <= now_s - DAY_S:
            q.popleft()
        return q

    def room(self, factory_id: str, now_s: int) -> int:
        """How many more victims ``factory_id`` may take now."""
        return max(0, self.max_per_day - len(self._window(factory_id, now_s)))

    def cooling(self, job_id: str, now_s: int) -> bool:
        """True while ``job_id`` was preempted less than ``victim_cooldown_s`` ago."""
        t = self._last_of_job.get(job_id)
        return t is not None and now_s - t < self.victim_cooldown_s

    def record(self, factory_id: str, job_id: str, now_s: int) -> None:
        self._window(factory_id, now_s).append((now_s, job_id))
        self._last_of_job[job_id] = now_s

    def forget(self, job_id: str) -> None:
        """A preemption of ``job_id`` did not take effect: it no longer counts against any limit."""
        self._last_of_job.pop(job_id, None)
        for q in self._by_factory.values():
            for item in [x for x in q if x[1] == job_id]:
                q.remove(item)
