"""One place sets the SMS service's garbage-collector tuning: the kernel, from its settings."""

from __future__ import annotations

import gc

from services.kernel.settings import ServiceSettings
from services.sms.settings import Settings
from tests.services.sms.conftest import StartSms, StartSmscs


async def test_the_served_sms_process_collects_with_the_channel_workers_threshold(
    smscs: StartSmscs, start_sms: StartSms
) -> None:
    before = gc.get_threshold()
    try:
        await start_sms(await smscs(("opA",)), routes="opA=32")
        assert gc.get_threshold()[0] == Settings.gc_young_threshold
        assert Settings.gc_young_threshold > ServiceSettings.gc_young_threshold
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
