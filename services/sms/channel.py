"""SMS as a channel of the worker: a recipient's job, its submission over the least loaded bind of
its operator, and the sorting of the SMSC's answer (docs/channel.md, docs/sms.md)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from services.channel.codec import Header
from services.channel.model import Entry, State
from services.channel.ports import Answer, Sorted
from services.channel.units import Units
from services.sms import metrics
from services.sms.model import SmsJob
from services.sms.ports import Bind, Outcome, Submission, SubmitAnswer
from services.sms.routing import Router, is_e164
from services.sms.tokens import OperatorPacer

#: The channel's name: stream `tocsin:stream:sms`, group `sms`, tables `sms_messages`, ...
NAME = "sms"
#: Seconds before its alert's expiry that a segment is no longer written: it must reach the SMSC
#: while its validity period still runs.
EXPIRY_MARGIN_S = 0.25
#: Delivery-receipt stat -> recipient state ('' : intermediate, consumed without a change).
RECEIPT_STATES = {
    "DELIVRD": State.DELIVERED.value,
    "ACCEPTD": State.DELIVERED.value,
    "EXPIRED": State.EXPIRED.value,
    "UNDELIV": State.FAILED.value,
    "REJECTD": State.FAILED.value,
    "DELETED": State.FAILED.value,
    "UNKNOWN": State.FAILED.value,
    "ENROUTE": "",
}
#: Receipt stat -> (recipient state, error) as written; filled as stats are met (a handful).
_ROWS: dict[str, tuple[str, str]] = {}


def receipt_row(stat: str) -> tuple[str, str]:
    """The recipient state and error a receipt stat writes (looked up once per stat)."""
    row = _ROWS.get(stat)
    if row is None:
        text = str(stat)
        upper = text.upper()
        error = "" if upper in ("DELIVRD", "ACCEPTD") else text
        row = (RECEIPT_STATES.get(upper, State.FAILED.value), error)
        if len(_ROWS) < 256:
            _ROWS[stat] = row
    return row


class SmsChannel:
    """The SMS channel: operators are its routes, the sum of an operator's bind windows its
    concurrency, one segment one unit."""

    name = NAME

    def __init__(
        self,
        *,
        router: Router,
        binds: Mapping[str, Sequence[Bind]],
        pacers: Mapping[str, OperatorPacer],
        units: Units,
        default_sender: str,
    ) -> None:
        for operator, op_binds in binds.items():
            if not op_binds:
                raise ValueError(f"operator {operator} has no binds")
        self.router = router
        self._binds = {op: list(b) for op, b in binds.items()}
        self._pacers = pacers
        self._units = units
        self._default_sender = default_sender
        # Label children looked up once: labels() per message costs more than the increment.
        self._submitted = {
            b.name: metrics.SUBMITTED.labels(op, b.name) for op, bs in binds.items() for b in bs
        }
        self._throttled = {
            b.name: metrics.THROTTLED.labels(op, b.name) for op, bs in binds.items() for b in bs
        }
        self._segments_metric = {op: metrics.SEGMENTS.labels(op) for op in binds}
        #: The worker's view of the alerts' control keys (`ControlCache.verdict`), set once the
        #: worker exists: the last check before each submit_sm, reconnect included.
        self.verdict: Callable[[str, int], State | None] = _no_verdict
        #: Whether an address was removed (`Tombstones.erased`), set with `verdict`: a job that
        #: waited for its token past a removal is not handed over.
        self.erased: Callable[[str], bool] = _never_erased

    def lanes(self) -> dict[str, int]:
        """Operators and the sum of their binds' windows."""
        return {op: sum(b.window for b in binds) for op, binds in self._binds.items()}

    def job(self, entry: Entry, header: Header, address: str, language: str) -> SmsJob:
        """The job of one number, routed to its operator; an invalid number fails unsent."""
        text = header.text_for(language)
        valid = is_e164(address)
        operator = self.router.route(address) if valid else self.router.default
        job = SmsJob(
            entry,
            address,
            operator,
            text,
            header.sender or self._default_sender,
            self._units.sms(text),
        )
        if not valid:
            job.error = "invalid number"
        return job

    def route_up(self, operator: str) -> bool:
        """Whether any bind of the operator is up (the consumer reads on while one is down)."""
        return any(b.is_bound for b in self._binds[operator])

    def _pick(self, operator: str) -> Bind:
        binds = self._binds[operator]
        best: Bind | None = None
        load = 0.0
        for bind in binds:
            if bind.is_bound:
                mine = bind.outstanding / bind.window
                if best is None or mine < load:
                    best, load = bind, mine
        return best or binds[0]

    async def deliver(self, job: SmsJob) -> Answer:
        """Submit every (or every missing) segment over the least loaded bound bind."""
        operator = job.route
        bind = self._pick(operator)
        if job.missing is None:
            job.attempts += 1
        answer = await bind.submit(
            Submission(
                destination=job.address,
                source=job.sender,
                text=job.text,
                reference=job.reference,
                segments=job.missing,
                # One token per submit_sm: the bind takes it before writing each segment, once
                # it is up, and first asks whether the alert still wants it sent.
                pace=self._pace(job),
                expires_at=job.entry.expires,
            )
        )
        return self._sort(job, bind, answer)

    def _pace(self, job: SmsJob) -> Callable[[], Awaitable[bool]]:
        """The bind's step before each submit_sm: the job's verdict, then the operator's token.

        A job may wait inside a bind for a long time (the SMSC down); its alert may have been
        cancelled, superseded or have expired meanwhile: then nothing of it is handed over.
        """
        take = self._pacers[job.route].take
        entry, address = job.entry, job.address

        async def pace() -> bool:
            if self._stale(entry):
                return False
            await take()
            # The wait for a token may be long too: an alert cancelled or a number removed
            # meanwhile is not handed over (withdrawn: the lane records why).
            return not (self._stale(entry) or self.erased(address))

        return pace

    def _stale(self, entry: Entry) -> bool:
        # EXPIRY_MARGIN_S before its expiry: the submit_sm must reach the SMSC while its validity
        # period still runs (the write, the network, the SMSC's reading).
        return (
            time.time() >= entry.expires - EXPIRY_MARGIN_S
            or self.verdict(entry.alert, entry.version) is not None
        )

    def _sort(self, job: SmsJob, bind: Bind, answer: SubmitAnswer) -> Answer:
        """What the SMSC's answer means: submitted, resubmit first, later, or failed."""
        self._merge(job, answer)
        outcome = answer.outcome
        if outcome is Outcome.ACCEPTED:
            job.via = bind.name
            job.missing = None
            self._pacers[job.route].accepted()
            self._submitted[bind.name].inc()
            self._segments_metric[job.route].inc(job.units)
            return DONE
        if answer.missing and len(answer.missing) < len(answer.message_ids):
            job.missing = answer.missing
        status = f"0x{answer.command_status & 0xFFFFFFFF:02x}" if answer.command_status >= 0 else ""
        if outcome is Outcome.THROTTLED:
            self._throttled[bind.name].inc()
            self._pacers[job.route].throttled()
            return AGAIN
        if outcome is Outcome.BIND_LOST:
            return AGAIN
        if outcome is Outcome.WITHDRAWN:
            # Back to the lane, which settles it unsent as cancelled, superseded or expired (the
            # same verdict and clock it checks before every delivery).
            metrics.WITHDRAWN.labels(job.route).inc()
            return AGAIN
        if outcome is Outcome.PERMANENT:
            metrics.FAILED.labels(job.route, "permanent").inc()
            return Answer(Sorted.FAILED, error=status)
        return Answer(Sorted.LATER, error=status)

    @staticmethod
    def _merge(job: SmsJob, answer: SubmitAnswer) -> None:
        refs = job.refs
        if not refs:
            job.refs = list(answer.message_ids)
        else:
            for i, mid in enumerate(answer.message_ids):
                if mid and i < len(refs):
                    refs[i] = mid
        job.reference = answer.reference

    def gave_up(self, job: SmsJob, reason: str) -> None:
        """`tocsin_sms_failed_total`: an invalid number counts as permanent."""
        metrics.FAILED.labels(job.route, "permanent" if reason == "invalid" else reason).inc()

    def receipts_recorded(self, operator: str, state: State, latencies: list[float]) -> None:
        """The SMS metrics of receipts written (the recorder's `on_receipts`)."""
        if state is State.DELIVERED:
            metrics.DELIVERED.labels(operator).inc(len(latencies))
            histogram = metrics.RECEIPT_LATENCY.labels(operator)
            for latency in latencies:
                histogram.observe(max(latency, 0.0))
        elif state is State.FAILED:
            metrics.FAILED.labels(operator, "permanent").inc(len(latencies))
        elif state is State.EXPIRED:
            metrics.FAILED.labels(operator, "expired").inc(len(latencies))


def _no_verdict(alert: str, version: int) -> State | None:
    return None


def _never_erased(address: str) -> bool:
    return False


#: Answers without anything of their own, made once.
DONE = Answer(Sorted.DONE)
AGAIN = Answer(Sorted.AGAIN)
