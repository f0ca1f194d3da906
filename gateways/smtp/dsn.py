"""Tagged return paths and RFC 3464 delivery status notifications (bounces).

One return path per transaction (`bounces+<tag>@domain`), not per recipient: per-recipient VERP
would need one transaction, and one copy of the message, per recipient. A bounce comes back to
the transaction's tag and names its recipient in `Final-Recipient` / `Original-Recipient`; tag
and recipient together find the recipient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

#: What a tag may contain: it sits in the local part of an address, unquoted.
TAG = re.compile(r"^[A-Za-z0-9._=-]{1,48}$")


def tagged_address(*, local: str, tag: str, domain: str) -> str:
    """`local+tag@domain`: the envelope sender of one transaction."""
    if not TAG.match(tag):
        raise ValueError(f"tag {tag!r}: 1 to 48 of A-Z a-z 0-9 . _ = -")
    return f"{local}+{tag}@{domain}"


def tag_of(address: str) -> str | None:
    """The tag of a tagged address (`local+tag@domain`), or None."""
    local, at, _ = address.strip("<>").rpartition("@")
    if not at or "+" not in local:
        return None
    tag = local.split("+", 1)[1]
    return tag if TAG.match(tag) else None


@dataclass(frozen=True, slots=True)
class Bounce:
    """One recipient's part of a delivery status notification."""

    #: The recipient the report is about (address only, lower-cased domain kept as written).
    recipient: str
    #: `failed`, `delayed`, `delivered`, `relayed` or `expanded` (RFC 3464 2.3.3).
    action: str
    #: Enhanced status code (RFC 3463), e.g. `5.1.1`.
    status: str
    #: The remote MTA's diagnostic, if any.
    diagnostic: str

    @property
    def permanent(self) -> bool:
        """Whether the recipient failed for good."""
        return self.action == "failed" or self.status.startswith("5.")


def _address(value: str) -> str:
    # "rfc822; user@example.org" (RFC 3464 2.3.2): the address type, then the address.
    _, _, address = value.partition(";")
    return (address or value).strip().strip("<>")


def _status_groups(part: Message) -> list[Message]:
    # message/delivery-status: the per-message fields, then one field group per recipient.
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\r?\n", text.strip())
    return [message_from_bytes(b.encode(), policy=compat32) for b in blocks if b.strip()]


def parse(raw: bytes) -> list[Bounce]:
    """The per-recipient reports of a DSN; [] for anything that is not one (auto-replies etc.)."""
    msg = message_from_bytes(raw, policy=compat32)
    if msg.get_content_type() != "multipart/report":
        return []
    bounces = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for group in _status_groups(part)[1:]:
            recipient = group.get("Final-Recipient") or group.get("Original-Recipient")
            action = (group.get("Action") or "").strip().lower()
            if not recipient or not action:
                continue
            bounces.append(
                Bounce(
                    recipient=_address(str(recipient)),
                    action=action,
                    status=(group.get("Status") or "").strip(),
                    diagnostic=_address(str(group.get("Diagnostic-Code") or "")),
                )
            )
    return bounces
