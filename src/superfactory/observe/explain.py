"""``--explain JOB``: the story of one job in words — where it ran, why it waited, what it lost."""

from __future__ import annotations

from superfactory.domain.events import EventKind
from superfactory.errors import SuperfactoryError
from superfactory.observe.record import RunRecord
from superfactory.observe.summary import job_ettr


def _t(s: int) -> str:
    d, r = divmod(s, 86400)
    h, r = divmod(r, 3600)
    m, sec = divmod(r, 60)
    return f"d{d} {h:02d}:{m:02d}:{sec:02d}"


def explain_job(result: RunRecord, job_id: str, max_lines: int = 40) -> str:
    """A readable account of ``job_id`` in ``result``.

    Raises:
        SuperfactoryError: unknown job (the message suggests similar ids).
    """
    jr = next((j for j in result.jobs if j.job.id == job_id), None)
    if jr is None:
        ids = [j.job.id for j in result.jobs]
        near = [i for i in ids if job_id.lower() in i.lower()][:5] or ids[:5]
        raise SuperfactoryError(f"no job {job_id!r} in this run; e.g. {', '.join(near)}")
    j = jr.job
    lines = [
        f"job {j.id}: {j.gpus} x {j.accelerator}, priority {j.priority}, home {j.home_factory or '-'}, "
        f"sovereignty {sorted(j.sovereignty) or '-'}",
        f"  state at end: {jr.state.value}; progress {jr.progress_s / 3600:.1f} h of {j.work_s / 3600:.1f} h "
        f"productive; ETTR {job_ettr(jr, result.scenario.duration_s) or 0:.3f}",
        f"  interruptions {jr.interruptions} (lost work {jr.lost_work_s / 3600:.2f} h, recovery "
        f"{jr.recovery_s / 3600:.2f} h), planned stops {jr.planned_stops}, preemptions {jr.preemptions}",
    ]
    if jr.state.value == "pending" and job_id in result.waiting_reasons:
        lines.append(f"  waiting because: {result.waiting_reasons[job_id]}")
    elif jr.first_start_s < 0:
        lines.append(f"  never started; last reason: {result.waiting_reasons.get(job_id, 'not yet submitted')}")
    kinds = {EventKind.JOB_SUBMITTED, EventKind.JOB_PLACED, EventKind.JOB_INTERRUPTED, EventKind.JOB_PLANNED_STOP,
             EventKind.JOB_PREEMPTED, EventKind.JOB_MIGRATED, EventKind.JOB_HOT_SWAPPED, EventKind.JOB_COMPLETED,
             EventKind.AUDIT_REFUSAL}
    events = [e for e in result.events if e.job == job_id and e.kind in kinds]
    history = result.reason_history.get(job_id, [])
    if history:
        lines.append(f"  why it waited ({len(history)} distinct reasons, in order):")
        lines.extend(f"    {_t(t)}  {reason}" for t, reason in history[:max_lines])
    lines.append(f"  timeline ({len(events)} events{', first ' + str(max_lines) if len(events) > max_lines else ''}):")
    for e in events[:max_lines]:
        detail = {
            EventKind.JOB_PLACED: f"placed on {e.factory} ({int(e.value)} GPUs)",
            EventKind.JOB_INTERRUPTED: f"interrupted on {e.factory} node {e.node}: {e.cause} "
                                       f"(lost {e.value / 60:.1f} min of work)",
            EventKind.JOB_COMPLETED: f"completed on {e.factory}",
            EventKind.JOB_HOT_SWAPPED: f"hot-swapped on {e.factory}: {e.cause} (paused {e.value:.0f} s)",
            EventKind.JOB_SUBMITTED: "submitted",
        }.get(e.kind, f"{e.kind.value} {e.factory} {e.cause}".strip())
        lines.append(f"    {_t(e.time_s)}  {detail}")
    return "\n".join(lines)
