"""Repair of a feasible plan by local search: *shift* and *ejection* moves (stage 3 of the solver pipeline).

:func:`improve` runs *shift* moves (a job moves to a column that fits) and *ejection* moves (a job takes a
column that does not fit by evicting one job from the rows that overflow; the evicted job moves to its cheapest
column that then fits, its wait column included; a swap is the special case where it takes the place the first
job left). Candidates are the jobs whose column has a positive LP reduced cost, i.e. where the rounding
disagrees with the LP. Every accepted move lowers the cost strictly, so the repair never worsens the rounding.
This recovers most of the loss of fractional jobs that rounding sent to an expensive wait column.

Contract: from a feasible plan, :func:`improve` returns a feasible plan that costs no more; deterministic (no
HiGHS, no clock, ties broken by index). Pure: no I/O.
"""

from __future__ import annotations

import math

import numpy as np

from superfactory.policy.assignment import EPS, AssignmentProblem, FloatArray, IntArray


class _Plan:
    """A mutable plan for local search: choice, capacity left per row, and the jobs on each row."""

    __slots__ = ("choice", "left", "members", "p")

    def __init__(self, p: AssignmentProblem, choice: IntArray) -> None:
        self.p = p
        self.choice = choice.copy()
        self.left = p.row_cap.astype(np.float64) - p.usage(choice)
        self.members: list[set[int]] = [set() for _ in range(p.row_cap.size)]
        rows = p.col_rows[choice]
        for j, r in zip(*np.nonzero(rows >= 0), strict=True):
            self.members[int(rows[j, r])].add(int(j))

    def move(self, j: int, c: int) -> None:
        p, old = self.p, int(self.choice[j])
        for r, u in zip(p.col_rows[old].tolist(), p.col_use[old].tolist(), strict=True):
            if r >= 0:
                self.left[r] += u
                self.members[r].discard(j)
        for r, u in zip(p.col_rows[c].tolist(), p.col_use[c].tolist(), strict=True):
            if r >= 0:
                self.left[r] -= u
                self.members[r].add(j)
        self.choice[j] = c


def _best_ejection(plan: _Plan, j: int, c: int, g_j: float, floor: float,
                   min_cost: FloatArray) -> tuple[float, int, int]:
    """Best move "job ``j`` to column ``c``, evicting one job ``k`` to its cheapest fitting column ``a``".

    ``g_j`` is ``j``'s own saving; returns ``(gain, k, a)`` with ``gain > floor``, ``k = -1`` for a plain shift,
    or ``(floor, -1, -1)`` when no such move exists.
    """
    p = plan.p
    cur = int(plan.choice[j])
    left = plan.left.copy()
    m = p.col_rows[cur] >= 0
    np.add.at(left, p.col_rows[cur][m], p.col_use[cur][m])
    rows_c = p.col_rows[c][p.col_rows[c] >= 0]
    np.subtract.at(left, rows_c, p.col_use[c][p.col_rows[c] >= 0])
    over = rows_c[left[rows_c] < -EPS]
    if over.size == 0:
        return (g_j, -1, -1) if g_j > floor else (floor, -1, -1)
    cand = set.intersection(*(plan.members[r] for r in over.tolist()))
    cand.discard(j)
    if not cand:
        return floor, -1, -1
    ks = np.fromiter(cand, dtype=np.int64, count=len(cand))
    ks.sort()  # set order is not deterministic across runs; the tie-break below must be
    ck = plan.choice[ks]
    ks = ks[g_j + p.col_cost[ck] - min_cost[ks] > floor]  # the best k can do is its cheapest column
    if ks.size == 0:
        return floor, -1, -1
    ck = plan.choice[ks]
    rk, uk = p.col_rows[ck], p.col_use[ck]
    freed = np.stack([np.where(rk == r, uk, 0.0).sum(axis=1) for r in over.tolist()], axis=1)
    covers = (left[over][None, :] + freed >= -EPS).all(axis=1)
    ks, ck, rk, uk = ks[covers], ck[covers], rk[covers], uk[covers]
    if ks.size == 0:
        return floor, -1, -1
    # every column of every candidate k: does it fit once j has moved and k has left?
    lens = p.job_ptr[ks + 1] - p.job_ptr[ks]
    owner = np.repeat(np.arange(ks.size), lens)
    idx = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(p.job_ptr[ks], lens)
    ra, ua = p.col_rows[idx], p.col_use[idx]
    rel = np.where(ra[:, :, None] == rk[owner][:, None, :], uk[owner][:, None, :], 0.0).sum(axis=2)
    avail = np.where(ra >= 0, left[np.maximum(ra, 0)] + rel, np.inf)
    fits = (ua <= avail + EPS).all(axis=1) & (idx != ck[owner])
    gain = np.where(fits, g_j + p.col_cost[ck[owner]] - p.col_cost[idx], -np.inf)
    i = int(np.argmax(gain))
    if gain[i] > floor:
        return float(gain[i]), int(ks[owner[i]]), int(idx[i])
    return floor, -1, -1


def _shift_pass(plan: _Plan, col_job: IntArray, scale: float) -> int:
    """Move jobs to cheaper columns that fit in the capacity left, biggest saving first; returns the count.

    Candidates are found for all columns at once (numpy); the moves are then applied one by one, each
    re-checked against the capacity the earlier ones left.
    """
    p = plan.p
    ch = plan.choice
    own = ch[col_job]
    cheaper = p.col_cost < p.col_cost[own] - scale
    if not cheaper.any():
        return 0
    cols = np.flatnonzero(cheaper)
    ra, ua = p.col_rows[cols], p.col_use[cols]
    rk, uk = p.col_rows[own[cols]], p.col_use[own[cols]]
    rel = np.where(ra[:, :, None] == rk[:, None, :], uk[:, None, :], 0.0).sum(axis=2)
    avail = np.where(ra >= 0, plan.left[np.maximum(ra, 0)] + rel, np.inf)
    ok = (ua <= avail + EPS).all(axis=1)
    cols, ra, ua, rel = cols[ok], ra[ok], ua[ok], rel[ok]
    if cols.size == 0:
        return 0
    delta = p.col_cost[cols] - p.col_cost[own[cols]]
    # each job moves at most once per pass: keep its three best candidates, then biggest saving first
    by_job = np.lexsort((delta, col_job[cols]))
    jobs_sorted = col_job[cols[by_job]]
    rank = np.arange(by_job.size) - np.searchsorted(jobs_sorted, jobs_sorted)
    top = by_job[rank < 3]
    order = top[np.argsort(delta[top], kind="stable")]
    # plain Python scalars from here: thousands of tiny checks, where numpy's per-call overhead dominates.
    # A job's own column only changes when it moves, and then it is done, so `rel` stays valid.
    left = plan.left.tolist()
    moved = 0
    done: set[int] = set()
    for c, j, rows, use, rl in zip(cols[order].tolist(), col_job[cols[order]].tolist(), ra[order].tolist(),
                                   ua[order].tolist(), rel[order].tolist(), strict=True):
        if j in done:
            continue
        if all(r < 0 or u <= left[r] + e + EPS for r, u, e in zip(rows, use, rl, strict=True)):
            touched = [r for r in p.col_rows[plan.choice[j]].tolist() + rows if r >= 0]
            plan.move(j, c)
            for r in touched:
                left[r] = float(plan.left[r])
            done.add(j)
            moved += 1
    return moved


def improve(p: AssignmentProblem, choice: IntArray, reduced_cost: FloatArray | None = None,
            max_passes: int = 3, max_targets: int = 4) -> IntArray:
    """Shift/ejection local search (see the module docstring); returns a new plan.

    Contract: if ``choice`` is feasible, the result is feasible and costs no more (each accepted move lowers
    the cost strictly). With ``reduced_cost`` (from the LP) only jobs whose column has a positive reduced cost
    move, towards columns with a lower one (their own cost may rise if the evicted job saves more); without it,
    every job not on its cheapest column tries its cheaper columns. Each job tries at most ``max_targets``
    columns (the most promising: lowest reduced cost, else lowest cost). At most ``max_passes`` sweeps.
    """
    if p.n_cols <= SMALL_COLS and _plain_ok(p, reduced_cost):
        return _improve_small(p, choice, reduced_cost, max_passes, max_targets)
    plan = _Plan(p, choice)
    cost = p.col_cost
    min_cost = np.minimum.reduceat(cost, p.job_ptr[:-1]) if p.n_jobs else np.zeros(0)
    scale = 1e-9 * max(1.0, float(np.abs(cost).max(initial=0.0)))
    col_job = p.col_job()
    for _ in range(max_passes):
        moved = _shift_pass(plan, col_job, scale)
        ch = plan.choice
        key = reduced_cost[ch] if reduced_cost is not None else cost[ch] - min_cost
        js = np.flatnonzero(key > scale)
        for j in js[np.argsort(-key[js], kind="stable")].tolist():
            cur = int(plan.choice[j])
            lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
            floor = max(scale, 1e-9 * abs(float(cost[cur])))
            best: tuple[float, int, int, int] = (floor, -1, -1, -1)
            key_c = reduced_cost[lo:hi] if reduced_cost is not None else cost[lo:hi]
            targets = lo + np.flatnonzero(key_c < key_c[cur - lo] - scale)
            targets = targets[np.argsort(key_c[targets - lo], kind="stable")[:max_targets]]
            for c in targets.tolist():
                gain, k, a = _best_ejection(plan, j, c, float(cost[cur] - cost[c]), best[0], min_cost)
                if gain > best[0]:
                    best = (gain, c, k, a)
            if best[1] >= 0:
                if best[2] >= 0:
                    plan.move(best[2], best[3])
                plan.move(j, best[1])
                moved += 1
        if moved == 0:
            break
    return plan.choice


#: problems with at most this many columns are repaired on plain Python values (:func:`_improve_small`)
SMALL_COLS = 256


def _plain_ok(p: AssignmentProblem, reduced_cost: FloatArray | None) -> bool:
    """Whether :func:`_improve_small` gives :func:`improve`'s array answer for ``p``: finite costs (Python's
    ``min``/comparisons and numpy's agree on them), every job with a column, and no column using one row twice
    (a row's use is then a single term, so no sum depends on numpy's order of addition)."""
    if not np.isfinite(p.col_cost).all() or (reduced_cost is not None and not np.isfinite(reduced_cost).all()):
        return False
    if p.n_jobs and not (np.diff(p.job_ptr) > 0).all():
        return False  # (a job without columns: numpy's reduceat and Python's min disagree)
    rows = p.col_rows
    if rows.shape[1] < 2:
        return True
    srt = np.sort(rows, axis=1)
    return not ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any()


def _improve_small(p: AssignmentProblem, choice: IntArray, reduced_cost: FloatArray | None, max_passes: int,
                   max_targets: int) -> IntArray:
    """:func:`improve` on plain Python values: the same passes, candidates, orders and tie-breaks, and the
    capacity left per row changed by the same additions and subtractions in the same order, without numpy's
    per-call cost (most of a geo full solve's repair: 1-10 jobs, ~12-40 columns; issue 12). Equal to the array
    version on the problems :func:`_plain_ok` admits (tested)."""
    n = p.n_jobs
    ptr = p.job_ptr.tolist()
    cost = p.col_cost.tolist()
    rows_of = p.col_rows.tolist()
    use_of = p.col_use.tolist()
    slots = [[(r, u) for r, u in zip(rows_of[c], use_of[c], strict=True) if r >= 0] for c in range(len(cost))]
    rc = reduced_cost.tolist() if reduced_cost is not None else None
    col_job = [j for j in range(n) for _ in range(ptr[j], ptr[j + 1])]
    ch = choice.tolist()
    use = [0.0] * p.row_cap.size
    members: list[set[int]] = [set() for _ in use]
    for j in range(n):
        for r, u in slots[ch[j]]:
            use[r] += u
            members[r].add(j)
    left = [cap - u for cap, u in zip(p.row_cap.astype(np.float64).tolist(), use, strict=True)]
    min_cost = [min(cost[ptr[j]:ptr[j + 1]]) for j in range(n)]
    scale = 1e-9 * max(1.0, max((abs(c) for c in cost), default=0.0))
    eps = EPS

    def move(j: int, c: int) -> None:
        for r, u in slots[ch[j]]:
            left[r] += u
            members[r].discard(j)
        for r, u in slots[c]:
            left[r] -= u
            members[r].add(j)
        ch[j] = c

    def rel_of(a: int, k_slots: list[tuple[int, float]]) -> list[float]:
        """Per row slot of column ``a``: what the column ``k_slots`` came from frees there (one term at most)."""
        return [sum(u for rk, u in k_slots if rk == r) if r >= 0 else 0.0 for r in rows_of[a]]

    def fits_after(a: int, rel: list[float], room: list[float]) -> bool:
        return all(r < 0 or u <= room[r] + e + eps for r, u, e in zip(rows_of[a], use_of[a], rel, strict=True))

    def shift_pass() -> int:
        cand: list[tuple[int, int, float]] = []  # (column, job, saving) of cheaper columns that fit now
        for c in range(len(cost)):
            j = col_job[c]
            own = ch[j]
            if cost[c] < cost[own] - scale and fits_after(c, rel_of(c, slots[own]), left):
                cand.append((c, j, cost[c] - cost[own]))
        if not cand:
            return 0
        by_job = sorted(range(len(cand)), key=lambda i: (cand[i][1], cand[i][2]))  # np.lexsort: stable
        top: list[int] = []
        last_job, rank = -1, 0
        for i in by_job:
            rank = rank + 1 if cand[i][1] == last_job else 0
            last_job = cand[i][1]
            if rank < 3:
                top.append(i)
        top.sort(key=lambda i: cand[i][2])  # stable: equal savings keep the order above
        moved = 0
        done: set[int] = set()
        for i in top:
            c, j, _delta = cand[i]
            if j in done:
                continue
            # (the job's own column only changes when it moves, and then it is done: the freed use holds)
            if fits_after(c, rel_of(c, slots[ch[j]]), left):
                move(j, c)
                done.add(j)
                moved += 1
        return moved

    def best_ejection(j: int, c: int, g_j: float, floor: float) -> tuple[float, int, int]:
        room = left[:]
        for r, u in slots[ch[j]]:
            room[r] += u
        for r, u in slots[c]:
            room[r] -= u
        over = [r for r, _u in slots[c] if room[r] < -eps]
        if not over:
            return (g_j, -1, -1) if g_j > floor else (floor, -1, -1)
        cand = set.intersection(*(members[r] for r in over))
        cand.discard(j)
        ks = [k for k in sorted(cand) if g_j + cost[ch[k]] - min_cost[k] > floor]
        best_gain, best_k, best_a = -math.inf, -1, -1
        first = True
        for k in ks:
            ck = ch[k]
            k_slots = slots[ck]
            if not all(room[r] + sum(u for rk, u in k_slots if rk == r) >= -eps for r in over):
                continue
            for a in range(ptr[k], ptr[k + 1]):
                fits = a != ck and fits_after(a, [sum(u for rk, u in k_slots if rk == r) for r in rows_of[a]], room)
                gain = g_j + cost[ck] - cost[a] if fits else -math.inf
                if first or gain > best_gain:
                    best_gain, best_k, best_a, first = gain, k, a, False
        if not first and best_gain > floor:
            return best_gain, best_k, best_a
        return floor, -1, -1

    for _ in range(max_passes):
        moved = shift_pass()
        key = [rc[ch[j]] for j in range(n)] if rc is not None else [cost[ch[j]] - min_cost[j] for j in range(n)]
        js = [j for j in range(n) if key[j] > scale]
        js.sort(key=lambda j: -key[j])
        for j in js:
            cur = ch[j]
            lo, hi = ptr[j], ptr[j + 1]
            floor = max(scale, 1e-9 * abs(cost[cur]))
            best: tuple[float, int, int, int] = (floor, -1, -1, -1)
            key_c = rc[lo:hi] if rc is not None else cost[lo:hi]
            bar = key_c[cur - lo] - scale
            targets = [lo + i for i in range(hi - lo) if key_c[i] < bar]
            targets.sort(key=lambda c: key_c[c - lo])
            for c in targets[:max_targets]:
                gain, k, a = best_ejection(j, c, cost[cur] - cost[c], best[0])
                if gain > best[0]:
                    best = (gain, c, k, a)
            if best[1] >= 0:
                if best[2] >= 0:
                    move(best[2], best[3])
                move(j, best[1])
                moved += 1
        if moved == 0:
            break
    return np.array(ch, dtype=np.int64)
