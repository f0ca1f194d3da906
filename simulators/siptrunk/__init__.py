"""SIP trunk simulator (an operator's UAS with RTP receivers) for tests, benchmarks, `make run`."""

from simulators.siptrunk.config import TrunkConfig
from simulators.siptrunk.server import CallRecord, Destination, SipTrunkSimulator

__all__ = ["CallRecord", "Destination", "SipTrunkSimulator", "TrunkConfig"]
