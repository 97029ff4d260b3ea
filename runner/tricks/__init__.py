"""The tricks: one file each, named as on the CLI (`reg=[rdrop]` -> runner/tricks/rdrop.py).

The interface they implement (`Trick`, `Out`) lives in runner.hooks, so the engine depends on the
interface only and never on this folder; `runner.build.tricks` instantiates the configured tricks
and hands them to the engine.
"""

from runner.hooks import Out, Trick, overrides

__all__ = ["Out", "Trick", "overrides"]
