"""Request and alert ids carried through a call in contextvars, and into every log line."""

from __future__ import annotations

import logging
from contextvars import ContextVar

#: Id of the gRPC request being served ("-" outside one).
request_id: ContextVar[str] = ContextVar("request_id", default="-")
#: Service identity of the caller, from its client certificate ("" when it presented none, e.g.
#: a user of alerting's public API; the `x-tocsin-caller` header in insecure development).
caller: ContextVar[str] = ContextVar("caller", default="")
#: Id of the alert being worked on ("-" when none).
alert_id: ContextVar[str] = ContextVar("alert_id", default="-")


class ContextFilter(logging.Filter):
    """Adds `request_id` and `alert_id` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.alert_id = alert_id.get()
        return True


def configure_logging(*, service: str, level: str) -> None:
    """Configure the root logger once, in a process's __main__."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {service} %(name)s [req=%(request_id)s alert=%(alert_id)s]"
            " %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
