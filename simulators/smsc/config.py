"""Settings of the SMSC simulator: what it accepts and how it misbehaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmscConfig:
    """One simulated SMSC (one operator). Shares are probabilities in [0, 1]."""

    name: str = "smsc"  # operator name, for logs
    host: str = "127.0.0.1"  # loopback only
    port: int = 0  # 0 picks a free port
    system_id: str = "tocsin"  # the one account it accepts
    password: str = "secret"  # its password
    window: int = 1000  # submit_sm unanswered per session above which 0x14 is answered
    submit_latency_s: float = 0.0  # delay before each submit_sm_resp
    receipt_delay_s: float = 0.0  # delay from submit_sm arrival to its delivery receipt
    undeliverable_share: float = 0.0  # receipts with stat UNDELIV
    expired_share: float = 0.0  # receipts with stat EXPIRED (the rest are DELIVRD)
    max_rate: int | None = None  # submit_sm accepted per one-second window; above: 0x58
    temporary_failure_share: float = 0.0  # submits answered `temporary_failure_status`
    temporary_failure_status: int = 0x45  # ESME_RSUBMITFAIL; 0x08 ESME_RSYSERR also common
    permanent_failure_share: float = 0.0  # submits answered `permanent_failure_status`
    permanent_failure_status: int = 0x0B  # ESME_RINVDSTADR
    generic_nack_share: float = 0.0  # submits answered generic_nack 0x03 instead of a resp
    receipt_retry_s: float = 0.05  # delay before resending a receipt answered with an error
    receipt_tlvs: bool = True  # False: receipts carry the text form only, no TLVs
    drop_after_submits: int | None = None  # close the connection once, at this many submit_sm
    garbage_after_submits: int | None = None  # send garbage once, at this many submit_sm
    hang: bool = False  # answer binds, then never anything (a hung SMSC)
    #: Hold every unbind_resp until this many unbinds have arrived (0: answer each at once): an
    #: SMSC slow to let go, against which binds closed one at a time each wait out their timeout.
    unbind_barrier: int = 0
    keep_texts: bool = False  # keep every reassembled text per destination (tests only)
    #: How receipts write the message id: "same" as the submit_sm_resp (lower-case hex),
    #: "decimal" (the same number in decimal, as many SMSCs do) or "hex_padded" (upper case,
    #: ten digits with leading zeros).
    receipt_id_format: str = "same"
    seed: int | None = None  # seed of the failure/state draws, for repeatable runs
    #: When set, the wall-clock times at which each destination's full messages arrived are
    #: written there as JSON ({destination: [unix times]}) when the simulator stops (benchmarks:
    #: a repeat arrival is a duplicate, and its time tells which fault caused it).
    arrivals_file: str = ""
