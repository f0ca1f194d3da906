"""SMTP only: a pooled client to a relay, messages signed once, DSN parsing, a bounce receiver."""

from gateways.smtp.bounces import BounceReceiver
from gateways.smtp.client import Disposition, RelayConfig, Reply, SmtpPool
from gateways.smtp.dsn import Bounce, tag_of, tagged_address
from gateways.smtp.message import Content, DkimKey, compose, sign

__all__ = [
    "Bounce",
    "BounceReceiver",
    "Content",
    "Disposition",
    "DkimKey",
    "RelayConfig",
    "Reply",
    "SmtpPool",
    "compose",
    "sign",
    "tag_of",
    "tagged_address",
]
