"""Metric families as plain values, and the Prometheus text format (0.0.4) they render to.

Why the node writes the text itself: prometheus-client's exposition module imports
``urllib.request``, ``http.server`` and ``wsgiref`` at its top (for its push gateway and
its own servers), and every import of the package runs it. A node that was scraped once
kept 4.2-4.6 MiB more resident for good, more than all of the node's own modules. The
format of counters and gauges is a few lines; :mod:`._collector` hands the same families
to prometheus-client, for a program that exports them from its own registry, and the
tests read this module's text with prometheus-client's parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

__all__ = ["MetricFamily", "render"]


class MetricFamily:
    """One metric: its name, kind, help text and samples.

    A plain class, not a dataclass: it is loaded by the first scrape, and a node keeps
    what it loads for good.

    Attributes:
        name: the name; a counter's without the ``_total`` that its samples carry.
        kind: ``"counter"`` or ``"gauge"``.
        help: one line that says what it counts.
        label: the name of its one label, or None for a family of one unlabelled sample.
        samples: (label value, value) pairs; the label value is None without a label.

    Raises:
        ValueError: a name Prometheus would not read, or samples whose labels do not
            match the family's.
    """

    __slots__ = ("help", "kind", "label", "name", "samples")

    def __init__(
        self,
        name: str,
        kind: Literal["counter", "gauge"],
        help: str,
        label: str | None = None,
        samples: tuple[tuple[str | None, float], ...] = (),
    ) -> None:
        if not _is_name(name):
            raise ValueError(f"metric name {name!r} is not a Prometheus name")
        if label is not None and (not _is_name(label) or label.startswith("__") or ":" in label):
            raise ValueError(f"label name {label!r} is not a Prometheus label name")
        for label_value, _ in samples:
            if (label_value is None) != (label is None):
                raise ValueError(f"{name}: a sample's label does not match the family")
        self.name = name
        self.kind = kind
        self.help = help
        self.label = label
        self.samples = samples

    @classmethod
    def single(
        cls, name: str, kind: Literal["counter", "gauge"], help: str, value: float
    ) -> MetricFamily:
        """A family of one sample without labels."""
        return cls(name, kind, help, None, ((None, value),))

    @property
    def sample_name(self) -> str:
        """The name its samples carry: a counter's ends in ``_total``."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


def _is_name(name: str) -> bool:
    # [a-zA-Z_:][a-zA-Z0-9_:]*, without loading a regular expression for it.
    return (
        name.isascii()
        and name[:1] != ""
        and not name[0].isdigit()
        and name.replace("_", "a").replace(":", "a").isalnum()
    )


def render(families: Iterable[MetricFamily]) -> bytes:
    """The families in the Prometheus text exposition format, version 0.0.4."""
    lines: list[str] = []
    for family in families:
        name = family.sample_name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        for label_value, value in family.samples:
            if label_value is None:
                lines.append(f"{name} {_number(value)}")
            else:
                lines.append(
                    f'{name}{{{family.label}="{_escape_label(label_value)}"}} {_number(value)}'
                )
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def _escape_help(text: str) -> str:
    # The format's rule for help text: backslash and line feed, nothing else.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    # A label value also escapes its double quotes.
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
