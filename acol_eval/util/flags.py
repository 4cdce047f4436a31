"""Options as users type them, for messages and records: a config field is shown as
its command-line flag, and a changed option as its old and new values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def option_flag(name: str) -> str:
    """A config field's flag: 'head_lr_mult' -> '--head-lr-mult'."""
    return f"--{name.replace('_', '-')}"


def changed_options(before: Mapping[str, Any], now: Mapping[str, Any], keys: Sequence[str],
                    shown: int = 3, name: Callable[[str], str] = option_flag) -> str:
    """'--epochs 1 (now 3), --lr 0.1 (now 0.01)': the first `shown` of `keys` with both
    values, then how many more there are, so a refusal says which flags to put back."""
    parts = [f"{name(k)} {before.get(k)!r} (now {now.get(k)!r})" for k in keys[:shown]]
    more = f", and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(parts) + more
