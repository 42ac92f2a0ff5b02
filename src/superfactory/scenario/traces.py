"""Loaders for public LLM request traces and the measured inter-region RTT matrix, and the 24-hour demand model.

Formats (the files are never copied into the repository; see ``../shared/data/SOURCES.md``):
- Azure LLM inference trace 2023 (``AzureLLMInferenceTrace_{code,conv}.csv``): ``TIMESTAMP`` (ISO date-time with
  7 fractional digits), ``ContextTokens``, ``GeneratedTokens``; one hour, one row per request.
- Mooncake FAST'25 trace (``conversation_trace.jsonl``): ``timestamp`` (ms since start), ``input_length``,
  ``output_length``, ``hash_ids`` (ids of the prompt's 512-token blocks; equal ids = equal prefix content).
  Mooncake serves with a prefix KV cache, so the loader computes for every request the prompt tokens already
  cached: the longest run of leading blocks seen in any earlier request (an unbounded cache, i.e. the best
  case of the trace's own prefix reuse). Only the uncached tokens need prefill.
- skyplane ``latency.csv``: measured ``avg_rtt`` (ms) between cloud regions named ``cloud:region``.

Trace references in a scenario (``services[].trace``) are either a path (absolute or relative to the scenario
file) or one of the names in :data:`NAMED_TRACES`, which resolve to ``../shared/data`` beside the repository
or beside the current directory (override with ``SUPERFACTORY_DATA=/path/to/data``).

The 24-hour demand model (:func:`tile_day`) turns a one-hour trace into per-minute demand of one PoP:
- *scale* ``k``: the PoP's users are ``k`` independent copies of the trace's population on average over the day;
  copy ``j`` replays the trace in a loop (tiling: the hour repeats back to back) starting at its own seeded
  random offset, so copies' bursts do not line up (superposition of independent users).
- *diurnal envelope*: the number of active copies follows ``k * (1 + A cos(2 pi (h - peak) / 24))`` with ``h``
  the PoP's local hour (UTC + ``timezone_offset_h``), ``A = 0.45``, ``peak = 14:00``: busiest early afternoon,
  quietest at night (a fractional copy contributes its fraction of requests).
- per minute it keeps the count of requests and the trace's request-size mix; within-minute burstiness enters
  the queueing model as the index of dispersion of 1-s arrival counts of the trace (preserved under
  superposition of independent copies).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from superfactory.errors import ScenarioError
from superfactory.scenario.loaders import csv_rows

#: named trace references -> path under the shared data folder
NAMED_TRACES: dict[str, str] = {
    "azure-conv": "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv",
    "azure-code": "azure-llm-inference-2023/AzureLLMInferenceTrace_code.csv",
    "mooncake-conversation": "mooncake-fast25/conversation_trace.jsonl",
}
RTT_MATRIX = "skyplane/latency.csv"
#: RTT assumed between a PoP and a factory mapped to the same cloud region (metro distance), ms
INTRA_REGION_RTT_MS = 2.0
MOONCAKE_BLOCK_TOKENS = 512
DIURNAL_AMPLITUDE = 0.45
DIURNAL_PEAK_H = 14.0
DAY_MIN = 1440


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """One recorded request stream, sorted by arrival.

    Attributes:
        name: where it came from.
        arrival_s: arrival times since the first request, s.
        prompt_tokens: prompt (context) tokens per request.
        cached_tokens: prompt tokens served from a prefix cache (0 when the trace has no prefix ids).
        output_tokens: generated tokens per request.
    """

    name: str
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    cached_tokens: np.ndarray
    output_tokens: np.ndarray

    @property
    def prefill_tokens(self) -> np.ndarray:
        """Prompt tokens that need prefill (not cached)."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def span_s(self) -> float:
        return float(self.arrival_s[-1]) if self.arrival_s.size else 0.0

    def dispersion(self, window_s: float = 1.0) -> float:
        """Index of dispersion (variance / mean) of arrival counts in ``window_s`` windows (1 for Poisson)."""
        counts = np.bincount((self.arrival_s // window_s).astype(np.int64))
        mean = counts.mean()
        return float(counts.var() / mean) if mean > 0 else 1.0


def data_dirs() -> list[Path]:
    """Where named references are looked for, in order."""
    out = []
    env = os.environ.get("SUPERFACTORY_DATA")
    if env:
        out.append(Path(env))
    out.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    out.append(Path.cwd().parent / "shared" / "data")
    out.append(Path.cwd() / "shared" / "data")
    return out


def resolve(ref: str, base_dir: Path | None) -> Path:
    """A trace/matrix reference -> an existing path.

    Raises:
        ScenarioError: the file does not exist (the message lists where it looked).
    """
    if ref in NAMED_TRACES or ref == "skyplane-latency":
        rel = NAMED_TRACES.get(ref, RTT_MATRIX)
        tried = [d / rel for d in data_dirs()]
        for p in tried:
            if p.is_file():
                return p
        raise ScenarioError(f"named trace {ref!r} not found; looked for {', '.join(map(str, tried))} (put the "
                            "public data in ../shared/data or set SUPERFACTORY_DATA)")
    p = Path(ref)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if not p.is_file():
        raise ScenarioError(f"trace file not found: {p} (give a path relative to the scenario file, an absolute "
                            f"path, or one of {sorted(NAMED_TRACES)})")
    return p


def _parse_ts(text: str) -> float:
    # Azure writes 7 fractional digits; datetime takes at most 6
    head, _, frac = text.strip().partition(".")
    return datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)


@lru_cache(maxsize=8)
def load_azure_trace(path: Path) -> RequestTrace:
    """Read an Azure LLM inference trace CSV. Raises ScenarioError on a bad file (names the row)."""
    t, ctx, gen = [], [], []
    for i, row in csv_rows(path, {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}, "an Azure LLM trace"):
        try:
            t.append(_parse_ts(row["TIMESTAMP"]))
            ctx.append(int(row["ContextTokens"]))
            gen.append(int(row["GeneratedTokens"]))
        except ValueError as e:
            raise ScenarioError(f"{path}:{i}: bad row: {e}") from None
    return _trace(path.name, np.asarray(t), np.asarray(ctx), np.zeros(len(ctx), np.int64), np.asarray(gen))


@lru_cache(maxsize=8)
def load_mooncake_trace(path: Path, block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> RequestTrace:
    """Read a Mooncake JSONL trace; ``cached_tokens`` from the prefix block ids (see the module docstring)."""
    t, inp, out, cached = [], [], [], []
    seen: set[int] = set()
    try:
        with open(path) as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    ids = r.get("hash_ids", [])
                    t.append(float(r["timestamp"]) / 1000.0)
                    inp.append(int(r["input_length"]))
                    out.append(int(r["output_length"]))
                except (ValueError, KeyError, TypeError) as e:
                    raise ScenarioError(f"{path}:{i}: not a Mooncake trace record: {e!r}") from None
                hit = 0
                for h in ids:
                    if h not in seen:
                        break
                    hit += 1
                # the last block may be partial; never count more than the prompt
                cached.append(min(hit * block_tokens, inp[-1]))
                seen.update(ids)
    except OSError as e:
        raise ScenarioError(f"cannot read trace {path}: {e}") from None
    return _trace(path.name, np.asarray(t), np.asarray(inp), np.asarray(cached), np.asarray(out))


def _trace(name: str, t: np.ndarray, p: np.ndarray, c: np.ndarray, o: np.ndarray) -> RequestTrace:
    if t.size == 0:
        raise ScenarioError(f"trace {name} has no requests")
    order = np.argsort(t, kind="stable")
    t = t[order] - t[order][0]
    return RequestTrace(name, t, p[order].astype(np.int64), c[order].astype(np.int64), o[order].astype(np.int64))


def load_trace(ref: str, base_dir: Path | None = None) -> RequestTrace:
    """Load a trace by named reference or path; the format follows from the suffix (.csv Azure, .jsonl Mooncake)."""
    p = resolve(ref, base_dir)
    if p.suffix == ".jsonl":
        return load_mooncake_trace(p)
    if p.suffix == ".csv":
        return load_azure_trace(p)
    raise ScenarioError(f"{p}: unknown trace format (expected an Azure .csv or a Mooncake .jsonl)")


def diurnal_envelope(local_hour: np.ndarray) -> np.ndarray:
    """Relative activity of a PoP's users at a local hour of day (mean 1 over a day)."""
    return 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (local_hour - DIURNAL_PEAK_H) / 24.0)


@dataclass(frozen=True, slots=True)
class DemandProfile:
    """Per-minute request demand of one PoP over one day (it repeats every day).

    Attributes:
        rate_rps: mean arrival rate in each minute of the UTC day, requests/s (length 1440).
        dispersion: index of dispersion of the arrivals within a minute (the queueing model's ``ca2``).
    """

    rate_rps: np.ndarray
    dispersion: float

    def at_minute(self, minute: int) -> float:
        return float(self.rate_rps[minute % DAY_MIN])


def tile_day(trace: RequestTrace, scale: float, timezone_offset_h: float, seed: int) -> DemandProfile:
    """Per-minute demand of one PoP: ``scale`` copies of ``trace`` on average, tiled and shaped by the local day.

    See the module docstring for the model. Deterministic in ``seed``.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    period = max(1, math.ceil(trace.span_s / 60.0))
    per_min = np.bincount(np.minimum((trace.arrival_s // 60).astype(np.int64), period - 1), minlength=period)
    per_min = per_min.astype(np.float64)
    minutes = np.arange(DAY_MIN)
    active = scale * diurnal_envelope((minutes / 60.0 + timezone_offset_h) % 24.0)
    n_copies = math.ceil(float(active.max()))
    offsets = np.random.default_rng(seed).integers(0, period, size=n_copies)
    counts = np.zeros(DAY_MIN)
    for j, off in enumerate(offsets):
        weight = np.clip(active - j, 0.0, 1.0)  # copy j is active in full once more than j+1 copies are
        counts += weight * per_min[(minutes + off) % period]
    return DemandProfile(counts / 60.0, max(1.0, trace.dispersion(1.0)))


@lru_cache(maxsize=2)
def load_rtt_matrix(path: Path) -> dict[tuple[str, str], float]:
    """Read skyplane ``latency.csv`` -> ``{(src, dst): avg_rtt_ms}``, symmetric (a missing direction takes the
    measured reverse one)."""
    out: dict[tuple[str, str], float] = {}
    for i, row in csv_rows(path, {"src_region", "dst_region", "avg_rtt"}, "a skyplane latency matrix"):
        try:
            out[(row["src_region"], row["dst_region"])] = float(row["avg_rtt"])
        except ValueError as e:
            raise ScenarioError(f"{path}:{i}: bad avg_rtt: {e}") from None
    for (a, b), v in list(out.items()):
        out.setdefault((b, a), v)
    return out


def rtt_ms(matrix: dict[tuple[str, str], float], a: str, b: str) -> float:
    """Measured RTT between two cloud regions, ms (``INTRA_REGION_RTT_MS`` within one region).

    Raises:
        KeyError: the pair was not measured (the caller turns it into a scenario error naming the field).
    """
    if a == b:
        return INTRA_REGION_RTT_MS
    return matrix[(a, b)]
