"""The claude-4-6 simulator: part of the product, used by tests, development and benchmarks."""

from .app import Simulator, SimulatorConfig
from .server import RunningSimulator, serve_forever, start_in_thread

__all__ = ["RunningSimulator", "Simulator", "SimulatorConfig", "serve_forever", "start_in_thread"]
