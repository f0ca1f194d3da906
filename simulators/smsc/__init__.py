"""SMSC simulator (SMPP 3.4 server side) for tests and benchmarks; loopback only."""

from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator

__all__ = ["SmscConfig", "SmscSimulator"]
