"""SMPP command statuses, their meaning for a submitter, and the gateway's errors.

Like Jasmin's protocols/smpp/error.py, errors are split by what they do to the bind:
`TransactionError` concerns one request and keeps the bind; `SessionError` means the session can no
longer be trusted and the bind is dropped (then rebuilt). Every error carries its SMPP
command status (0 where the peer sent none, e.g. a dead link).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CommandStatus(IntEnum):
    """SMPP 3.4 command_status values the gateway names (others stay plain ints)."""

    ESME_ROK = 0x00  #: no error
    ESME_RINVMSGLEN = 0x01  #: message length invalid
    ESME_RINVCMDLEN = 0x02  #: command length invalid
    ESME_RINVCMDID = 0x03  #: command id invalid
    ESME_RINVBNDSTS = 0x04  #: wrong bind state for the command
    ESME_RALYBND = 0x05  #: already bound
    ESME_RSYSERR = 0x08  #: system error
    ESME_RINVSRCADR = 0x0A  #: invalid source address
    ESME_RINVDSTADR = 0x0B  #: invalid destination address
    ESME_RBINDFAIL = 0x0D  #: bind failed
    ESME_RINVPASWD = 0x0E  #: invalid password
    ESME_RINVSYSID = 0x0F  #: invalid system id
    ESME_RMSGQFUL = 0x14  #: message queue full
    ESME_RINVESMCLASS = 0x43  #: invalid esm_class
    ESME_RSUBMITFAIL = 0x45  #: submit_sm failed
    ESME_RINVSRCTON = 0x48  #: invalid source TON
    ESME_RINVSRCNPI = 0x49  #: invalid source NPI
    ESME_RINVDSTTON = 0x50  #: invalid destination TON
    ESME_RINVDSTNPI = 0x51  #: invalid destination NPI
    ESME_RTHROTTLED = 0x58  #: throttling error: ESME exceeded its allowed rate
    ESME_RX_T_APPN = 0x64  #: ESME receiver temporary application error
    ESME_RX_P_APPN = 0x65  #: ESME receiver permanent application error
    ESME_RX_R_APPN = 0x66  #: ESME receiver reject message error
    ESME_RUNKNOWNERR = 0xFF  #: unknown error


class SubmitOutcome(StrEnum):
    """What a submitter must do with a message after its submit_sm."""

    ACCEPTED = "accepted"  #: the SMSC took every segment; receipts follow if requested
    THROTTLED = "throttled"  #: 0x58 / 0x14: slow down and resubmit; never drop
    TEMPORARY = "temporary"  #: a transient SMSC error: resubmit later
    PERMANENT = "permanent"  #: the SMSC will never take it: record it failed, do not retry
    BIND_LOST = "bind_lost"  #: the bind dropped before an answer: resubmit (maybe elsewhere)
    #: The caller's `pace` withdrew it before it was written (its alert was cancelled, superseded
    #: or expired while it waited for the bind): nothing more of it is sent.
    WITHDRAWN = "withdrawn"


THROTTLING_STATUSES = frozenset({CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL})

PERMANENT_STATUSES = frozenset(
    {
        0x01,  # invalid message length
        0x06,  # invalid priority flag
        0x07,  # invalid registered_delivery
        0x0A,  # invalid source address
        0x0B,  # invalid destination address
        0x15,  # invalid service type
        0x33,  # invalid number of destinations
        0x43,  # invalid esm_class
        0x48,  # invalid source TON
        0x49,  # invalid source NPI
        0x50,  # invalid destination TON
        0x51,  # invalid destination NPI
        0x53,  # invalid system_type
        0x62,  # invalid expiry
        0x63,  # invalid default message id
        0x65,  # receiver permanent application error
        0x66,  # receiver reject
        0xC0,  # error in optional part
        0xC1,  # optional parameter not allowed
        0xC2,  # invalid parameter length
        0xC3,  # missing optional parameter
        0xC4,  # invalid optional parameter value
    }
)

#: Outcomes from worst (what a caller must act on first) to best, for multi-segment results.
OUTCOME_SEVERITY = (
    SubmitOutcome.WITHDRAWN,
    SubmitOutcome.BIND_LOST,
    SubmitOutcome.THROTTLED,
    SubmitOutcome.TEMPORARY,
    SubmitOutcome.PERMANENT,
    SubmitOutcome.ACCEPTED,
)


def classify_status(status: int) -> SubmitOutcome:
    """Sort a submit_sm_resp command_status into a SubmitOutcome; unknown codes are temporary."""
    if status == CommandStatus.ESME_ROK:
        return SubmitOutcome.ACCEPTED
    if status in THROTTLING_STATUSES:
        return SubmitOutcome.THROTTLED
    if status in PERMANENT_STATUSES:
        return SubmitOutcome.PERMANENT
    return SubmitOutcome.TEMPORARY


def status_name(status: int) -> str:
    """Readable name of a command status for logs and errors."""
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08x}"


class SmppError(Exception):
    """Any SMPP-level failure; carries the command status (0 when the peer sent none)."""

    def __init__(self, message: str, *, command_status: int = 0) -> None:
        super().__init__(f"{message} ({status_name(command_status)})")
        self.command_status = command_status


class TransactionError(SmppError):
    """One request failed; the bind stays up."""


class GenericNackError(TransactionError):
    """The SMSC answered a request with generic_nack."""


class SessionError(SmppError):
    """The session is unusable: the bind is dropped and rebuilt."""


class BindRefusedError(SessionError):
    """The SMSC answered the bind with an error status (bad credentials, already bound...)."""


class ProtocolError(SessionError):
    """The SMSC sent bytes that are not valid SMPP (garbage, impossible length)."""


class DeadLinkError(SessionError):
    """Nothing came from the SMSC within the dead-link timeout (or a response never came)."""


class ConnectionLostError(SessionError):
    """The TCP connection closed or the SMSC unbound."""
