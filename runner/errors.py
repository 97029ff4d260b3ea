"""The one error type users see: one line naming the key, the problem and what is allowed."""

import difflib


class ConfigError(ValueError):
    """Bad configuration or input, raised before training. The message is one line."""

    def __init__(self, key: str, problem: str, allowed: str | None = None):
        self.key, self.problem, self.allowed = key, problem, allowed
        msg = f"{key}: {problem}" if key else problem
        if allowed:
            msg += f" (allowed: {allowed})"
        super().__init__(msg)


def check(cond: bool, key: str, problem: str, allowed: str | None = None) -> None:
    if not cond:
        raise ConfigError(key, problem, allowed)


def positive(value, key: str, integer: bool = False, allow_zero: bool = False) -> None:
    """Reject non-numbers, NaN, and values <= 0 (or < 0 with allow_zero)."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(key, f"must be {kind}, got {value!r}")
    if value != value or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(key, f"must be {bound}, got {value!r}")


def in_range(value, key: str, lo: float, hi: float, lo_open=False, hi_open=False) -> None:
    """Reject a number outside [lo, hi] (or the open variant)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(key, f"must be a number, got {value!r}")
    bad = (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi)
    if bad:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ConfigError(key, f"must be in {interval}, got {value!r}")


class TrainingFailed(RuntimeError):
    """The run cannot go on (non-finite loss, ranks drifted apart, ...). The message is one line."""


def closest(word: str, choices) -> str:
    """'; did you mean X?' for the nearest of `choices` to a misspelt `word` (difflib's ratio,
    the cutoff it uses by default), else ''. For an error's problem text: it reads
    `key: unknown key; did you mean alpha? (allowed: ...)`."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"; did you mean {match[0]}?" if match else ""
