"""The Prometheus text exposition format (0.0.4), written for ``/metrics`` in the catalog's order (the catalog,
:mod:`superfactory.observe.metrics_catalog`, is handed in by :mod:`superfactory.live.metrics`).

Written here rather than with prometheus_client's ``generate_latest``, which spent ~70 % of a scrape with 1,000
jobs validating and escaping label names per sample; the format is the same (a test parses it back with
prometheus_client's parser). Sample lines that are already rendered (the job-level series, cached per job by
:mod:`superfactory.live.job_series`) are passed through as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: metric name without the ``superfactory_`` prefix -> (label values, value)
Families = dict[str, list[tuple[tuple[str, ...], float]]]


def escape(v: str) -> str:
    """A label value escaped for the text format (backslash, double quote, newline)."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def value_text(v: float) -> str:
    """Go-parsable number: ints as such, floats by ``repr`` (``nan``/``inf`` parse case-insensitively)."""
    return str(v) if type(v) is int else repr(v)


class Exposition:
    """Renders families of the metrics it is given (a catalog's definitions: ``name``, ``help``, ``type`` and
    ``labels``, names with the ``superfactory_`` prefix), in their order."""

    def __init__(self, metrics: Iterable[Any]) -> None:
        self.by_name = {m.name.removeprefix("superfactory_"): m for m in metrics}
        self.order = {n: i for i, n in enumerate(self.by_name)}
        self.header = {n: _header(m) for n, m in self.by_name.items()}

    def render(self, fams: Families, rendered: dict[str, list[str]]) -> bytes:
        """The text exposition of ``fams`` and of already ``rendered`` sample lines (each ending in a newline),
        by metric name without the prefix, in catalog order, each family under its ``# HELP`` and ``# TYPE``
        lines."""
        lines: list[str] = []
        for name in sorted(set(fams) | set(rendered), key=lambda n: self.order.get(n, 1 << 30)):
            m = self.by_name[name]
            lines.append(self.header[name])
            if name in rendered:
                lines.extend(rendered[name])
                continue
            samples = fams[name]
            keys = m.labels
            if not keys:
                lines.extend(f"{m.name} {value_text(v)}\n" for _, v in samples)
                continue
            for values, v in samples:
                lbl = _LABELS.get((keys, values))
                if lbl is None:
                    if len(_LABELS) > _LABELS_MAX:
                        _LABELS.clear()
                    lbl = _LABELS[(keys, values)] = ",".join(
                        f'{k}="{escape(x)}"' for k, x in zip(keys, values, strict=True))
                lines.append(f"{m.name}{{{lbl}}} {value_text(v)}\n")
        return "".join(lines).encode()


def _header(m: Any) -> str:
    help_text = m.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {m.name} {help_text}\n# TYPE {m.name} {m.type}\n"


_LABELS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}  # rendered label sets, reused across scrapes
_LABELS_MAX = 100_000
