"""Settings every channel service has: reading, claiming, recording, retrying."""

from __future__ import annotations

import os
import socket
from typing import ClassVar

from pydantic import Field

from services.kernel import ServiceSettings


class ChannelSettings(ServiceSettings):
    """The channel worker's part of a channel service's settings (env prefix TOCSIN_)."""

    #: Every recipient allocates futures, coroutines and records: with a small young generation
    #: a collection runs every few dozen messages, and the full ones walk every job in hand (up
    #: to max_in_flight); py-spy showed a fifth of the SMS service's samples there. Reference
    #: counting still frees almost all of it at once; only cycles wait longer.
    gc_young_threshold: ClassVar[int] = 50_000

    # Days a delivery record keeps its phone number or e-mail address (statistics and billing
    # keep the rest; services/channel/retention.py).
    retention_days: float = Field(default=30.0, gt=0)
    # Seconds between two passes of the retention task.
    retention_interval_s: float = Field(default=3600.0, gt=0)
    # Stream entries read per XREADGROUP.
    read_count: int = Field(default=20, ge=1)
    # Milliseconds an XREADGROUP blocks waiting for work.
    read_block_ms: int = Field(default=200, ge=1)
    # Recipients of one lane held in this process (read, not yet durable) before that lane stops
    # reading (each lane has this budget: an emergency is read whatever bulk work is in hand).
    max_in_flight: int = Field(default=20_000, ge=1)
    # Largest number of state changes written to PostgreSQL in one statement.
    write_batch: int = Field(default=5_000, ge=1)
    # Seconds between two writes of buffered state changes (when the buffer is not full).
    write_interval_s: float = Field(default=0.02, gt=0)
    # First retry delay of a temporary failure (seconds); doubled per attempt up to the cap.
    retry_min_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    # Seconds an entry stays unacknowledged by a silent consumer before another one claims it.
    claim_idle_s: float = Field(default=30.0, gt=0)
    # Entries examined per XAUTOCLAIM call.
    claim_count: int = Field(default=50, ge=1)
    # Consumer name in the group; empty: host-pid (a restarted process is a new consumer).
    consumer: str = ""
    # Seconds an unmatched receipt is held waiting for its row before it is dropped.
    receipt_hold_s: float = Field(default=600.0, gt=0)
    # Seconds between refreshes of the cancelled/version keys of alerts in flight.
    control_refresh_s: float = Field(default=0.5, gt=0)
    # Originator when a work entry names none.
    default_sender: str = "BE-Alert"

    @property
    def consumer_name(self) -> str:
        """This process's consumer name in the stream group."""
        return self.consumer or f"{socket.gethostname()}-{os.getpid()}"
