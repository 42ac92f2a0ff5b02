"""The ETTR split (failure-ETTR, policy-wait share) per job and GPU-weighted, in report.html and the console.

A small twin run where one site goes down for 3 h under a running job: the job is off its nodes while nothing
lawful is up (a policy wait), the other job keeps running. The per-job split must reproduce the GPU-weighted
figures of the summary, and both must reach the reader.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from superfactory.observe.console import compare_table, summary_table
from superfactory.observe.report import write_report
from superfactory.observe.summary import job_ettr_split, summarize
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _run():
    text = scenario([factory("a", nodes=8), factory("b", nodes=8)],
                    [job("x", gpus=64, work="1d", home="a", sovereignty=[]),
                     job("y", gpus=32, work="12h")], duration="2d",
                    events=[{"at": "4h", "kind": "factory_outage", "factory": "a", "duration": "3h"}])
    return run_twin(parse_scenario(text), policy="home-region")


def test_split_per_job_adds_up_to_the_summary_and_reaches_report_and_console(tmp_path: Path) -> None:
    r = _run()
    s = summarize(r)
    split = {j.job: j for j in job_ettr_split(r)}
    assert set(split) == {"x", "y"}
    assert split["x"].policy_wait_share > 0.05, split["x"]  # off its nodes while its site was down
    assert split["y"].policy_wait_share == pytest.approx(0.0, abs=1e-9)
    gpu_wall = {jr.job.id: jr.job.gpus for jr in r.jobs}
    walls = {j: split[j].ettr and next(jr.progress_s for jr in r.jobs if jr.job.id == j) / split[j].ettr
             for j in split}
    held = {j: walls[j] * (1 - split[j].policy_wait_share) for j in split}
    assert s["policy_wait_share"] == pytest.approx(
        1 - sum(held[j] * gpu_wall[j] for j in split) / sum(walls[j] * gpu_wall[j] for j in split))
    assert s["policy_wait_share_job_mean"] == pytest.approx(sum(v.policy_wait_share for v in split.values()) / 2)
    assert s["failure_ettr_job_mean"] == pytest.approx(sum(v.failure_ettr for v in split.values()) / 2)
    for v in split.values():  # ETTR = failure-ETTR x (1 - policy wait share), job by job
        assert v.ettr == pytest.approx(v.failure_ettr * (1 - v.policy_wait_share))

    page = write_report(r, s, tmp_path / "report.html").read_text()
    assert "ETTR split" in page and "failure-ETTR" in page and "policy wait share" in page
    assert f"{split['x'].policy_wait_share:.1%}" in page  # the per-job row of the job that waited

    out = io.StringIO()
    con = Console(file=out, width=200)
    con.print(summary_table(s))
    con.print(compare_table("t", [s]))
    text = out.getvalue()
    assert "failure-ETTR" in text and f"{s['failure_ettr']:.3f}" in text
    assert "policy wait" in text and f"{s['policy_wait_share']:.1%}" in text
