"""ConfigErrors for the cluster file: a missing field, and an error placed in its file.

A missing field has no value to show, so its message says that it is missing instead of
printing ``None``.
"""

from __future__ import annotations

from ..core._errors import ConfigError

__all__ = ["MissingField", "in_file"]


class MissingField(ConfigError):
    """A required field is not in the cluster file (``value`` is None)."""

    def __init__(self, field: str, fix: str) -> None:
        super().__init__(field, None, fix)
        self.args = (f"{field} is missing: {fix}",)


def in_file(source: str, exc: ConfigError) -> ConfigError:
    """``exc`` with its field prefixed by the file it came from (``cluster.toml: nodes.a``)."""
    field = f"{source}: {exc.field}"
    if isinstance(exc, MissingField):
        return MissingField(field, exc.fix)
    return ConfigError(field, exc.value, exc.fix)
