"""Errors of the simulator::

    SimulatorError
     └── ScenarioError    a fault scenario (file or flags) is malformed or names what does not exist

Both stop ``python -m simulator`` before any agent starts, with a message naming the problem.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of the simulator's errors."""


class ScenarioError(SimulatorError):
    """A fault scenario is malformed, or names a station, sensor or charger that does not exist."""
