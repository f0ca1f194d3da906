"""SIP/RTP gateway: an asyncio UAC that calls, plays pre-encoded G.711 and hangs up.

It speaks SIP (RFC 3261 over UDP), SDP and RTP and nothing else: which trunk, how many channels
and calls per second, retries and billing belong to the voice service. See docs/voice.md.
"""

from gateways.sip.digest import Credentials
from gateways.sip.errors import CallOutcome, SipError, SipParseError, classify_status
from gateways.sip.rtp import FRAME_BYTES, MediaClock, Playback
from gateways.sip.uac import CallResult, Prompt, SipUac, Stats, Timers, Trunk

__all__ = [
    "FRAME_BYTES",
    "CallOutcome",
    "CallResult",
    "Credentials",
    "MediaClock",
    "Playback",
    "Prompt",
    "SipError",
    "SipParseError",
    "SipUac",
    "Stats",
    "Timers",
    "Trunk",
    "classify_status",
]
