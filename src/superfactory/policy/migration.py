"""Migration governance: per-job rate limit, per-destination quotas with an emergency reserve, and backoff.

The guard against the *power price cascade*: when one market turns expensive, every scheduler would flee it
at once and saturate the next cheapest site. :class:`MigrationGovernor` bounds that:

- **per job**: a running job changes factory at most once per ``min_interval_s`` (default 1 h), counted from
  its last move (a migration, or a resume in another factory after a pause);
- **per destination**: GPUs arriving by migration within a sliding ``window_s`` are capped at ``quota_share``
  of the destination's GPUs; planned (price-driven) moves may use only ``1 - emergency_reserve`` of that
  (80 % by default), the rest is reserved for emergency failover (moving work off a factory that is down).
  A destination that received nothing in the window takes one job bigger than that (``quota_left_gpus``'s
  ``largest_job_gpus``), so a job bigger than the share is rate-limited, not barred for ever;
- **backoff**: a move refused for lack of quota may not be retried to that destination before an
  exponentially distributed delay (mean ``backoff_mean_s`` = 60 s) that doubles with each further refusal,
  drawn from the policy's seeded generator so retries of many jobs spread out instead of colliding.

State is built only from the policy's own earlier decisions (no clock, no I/O): the caller passes ``now_s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class MigrationGovernor:
    """Quota, rate-limit and backoff bookkeeping (see module docstring)."""

    quota_share: float = 0.25
    window_s: int = 3600
    emergency_reserve: float = 0.20
    backoff_mean_s: float = 60.0
    backoff_cap_s: float = 3600.0
    min_interval_s: int = 3600
    _arrivals: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    _last_move_s: dict[str, int] = field(default_factory=dict)
    _backoff: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    refusals: int = 0

    def may_move(self, job_id: str, now_s: int) -> bool:
        """Whether ``job_id`` may change factory now (once per ``min_interval_s``)."""
        last = self._last_move_s.get(job_id)
        return last is None or now_s - last >= self.min_interval_s

    def backing_off(self, job_id: str, dest: str, now_s: int) -> bool:
        """Whether a refused move of ``job_id`` to ``dest`` is still in its backoff delay."""
        b = self._backoff.get((job_id, dest))
        return b is not None and now_s < b[0]

    def backoffs(self, job_id: str, now_s: int) -> tuple[str, ...]:
        """The destinations ``job_id`` is still backing off from at ``now_s`` (sorted)."""
        if not self._backoff:
            return ()
        return tuple(sorted(d for (j, d), (until, _n) in self._backoff.items() if j == job_id and now_s < until))

    def backoffs_by_job(self, now_s: int) -> dict[str, tuple[str, ...]]:
        """:meth:`backoffs` of every job at once (one pass over the backoffs; a job not in it has none)."""
        out: dict[str, list[str]] = {}
        for (j, d), (until, _n) in self._backoff.items():
            if now_s < until:
                out.setdefault(j, []).append(d)
        return {j: tuple(sorted(ds)) for j, ds in out.items()}

    def quota_left_gpus(self, dest: str, dest_gpus: int, now_s: int, emergency: bool,
                        largest_job_gpus: int = 0) -> float:
        """GPUs that may still arrive at ``dest`` by migration in the current window; when nothing has arrived
        in it, at least ``largest_job_gpus`` (the biggest job that would move there), so one such job may."""
        q = self._arrivals.get(dest)
        while q and q[0][0] <= now_s - self.window_s:
            q.popleft()
        used = sum(g for _, g in q) if q else 0
        share = self.quota_share * (1.0 if emergency else 1.0 - self.emergency_reserve)
        if used == 0:
            return max(share * dest_gpus, float(min(largest_job_gpus, dest_gpus)))
        return max(0.0, share * dest_gpus - used)

    def record_move(self, job_id: str, dest: str, gpus: int, now_s: int) -> None:
        """A move of ``job_id`` (``gpus``) to ``dest`` was decided at ``now_s``."""
        self._arrivals.setdefault(dest, deque()).append((now_s, gpus))
        self._last_move_s[job_id] = now_s
        self._backoff.pop((job_id, dest), None)

    def cancel_move(self, job_id: str, dest: str, gpus: int) -> None:
        """A recorded move did not take effect (its action was refused, failed or timed out): give its quota back
        and let the job move again (its once-per-interval clock restarts from its last real move)."""
        q = self._arrivals.get(dest)
        if q:
            for i in range(len(q) - 1, -1, -1):
                if q[i][1] == gpus:
                    del q[i]
                    break
        self._last_move_s.pop(job_id, None)

    def record_start(self, job_id: str, now_s: int) -> None:
        """A job started (first placement): it counts as a move for the once-per-interval rule."""
        self._last_move_s.setdefault(job_id, now_s)

    def refuse(self, job_id: str, dest: str, now_s: int, rng: np.random.Generator) -> int:
        """Record a quota refusal and return when ``job_id`` may next try ``dest`` (exponential backoff)."""
        _, attempts = self._backoff.get((job_id, dest), (0, 0))
        delay = min(self.backoff_cap_s, float(rng.exponential(self.backoff_mean_s)) * 2.0**attempts)
        until = now_s + max(1, round(delay))
        self._backoff[(job_id, dest)] = (until, attempts + 1)
        self.refusals += 1
        return until

    def forget(self, live_job_ids: set[str]) -> None:
        """Drop state of jobs that are no longer pending or running (bounded memory over long runs)."""
        for k in [k for k in self._last_move_s if k not in live_job_ids]:
            del self._last_move_s[k]
        for k2 in [k2 for k2 in self._backoff if k2[0] not in live_job_ids]:
            del self._backoff[k2]
