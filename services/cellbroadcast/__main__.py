"""Cell-broadcast service process: `python -m services.cellbroadcast`.

The one place where the concrete gateways are chosen: the ECBE REST client of osmo-cbc for each
operator's CBC, the LB-SMS client for each operator's platform, both seen through the ports.
"""

from __future__ import annotations

import asyncio

from tocsin.cellbroadcast.v1 import cellbroadcast_pb2, cellbroadcast_pb2_grpc

from gateways.cbc.ecbe import EcbeClient, EcbeMessage, GeoScope
from gateways.lbsms.client import LbSmsClient, LbSmsRequest
from services.cellbroadcast.broadcasts import Broadcasts, Platforms
from services.cellbroadcast.ports import CbsPayload, Reply
from services.cellbroadcast.sender import Sender
from services.cellbroadcast.servicer import CellBroadcastServicer
from services.cellbroadcast.settings import CbcSpec, Settings
from services.kernel import Kernel, run_service


class EcbeCbc:
    """An osmo-cbc ECBE client seen through the service's Cbc port."""

    def __init__(self, spec: CbcSpec, *, timeout_s: float) -> None:
        self._client = EcbeClient(base_url=spec.url, timeout_s=timeout_s)
        self._spec = spec

    async def create(
        self,
        *,
        message: CbsPayload,
        msg_code: int,
        update_nr: int,
        cells: tuple[str, ...],
        warning_period_s: int,
    ) -> Reply:
        """POST the message to the CBC."""
        by_cells = self._spec.scope == "cells"
        return await self._client.create(
            EcbeMessage(
                cbe_name=self._spec.cbe_name,
                message_id=message.message_id,
                geo_scope=GeoScope.CELL_WIDE if by_cells else GeoScope.PLMN_WIDE,
                msg_code=msg_code,
                update_nr=update_nr,
                dcs=message.dcs,
                pages=message.pages,
                repetition_period=self._spec.repetition_period,
                warning_period_sec=warning_period_s,
                cells=cells if by_cells else (),
            )
        )

    async def delete(self, *, message_id: int) -> Reply:
        """DELETE the message from the CBC."""
        return await self._client.delete(message_id)

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()


class HttpLbSms:
    """An LB-SMS client seen through the service's LbSms port."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._client = LbSmsClient(base_url=url, timeout_s=timeout_s)

    async def submit(
        self,
        *,
        request_id: str,
        texts: dict[str, str],
        cells: tuple[str, ...],
        validity_s: int,
        sender: str,
        polygon: str = "",
    ) -> Reply:
        """POST the request to the platform: the zone as the polygon if given, else the cells."""
        return await self._client.submit(
            LbSmsRequest(
                request_id=request_id,
                texts=texts,
                validity_s=validity_s,
                sender=sender,
                cells=() if polygon else cells,
                polygon_geojson=polygon,
            )
        )

    async def cancel(self, *, request_id: str) -> Reply:
        """DELETE the request."""
        return await self._client.cancel(request_id)

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()


async def build(kernel: Kernel[Settings]) -> None:
    """Wire the operators' adapters, the sender and its sweeps, and the servicer."""
    settings = kernel.settings
    platforms = settings.platforms()
    timeout = settings.request_timeout_s
    cbcs = {p.operator: EcbeCbc(p.cbc, timeout_s=timeout) for p in platforms if p.cbc}
    lbsms = {p.operator: HttpLbSms(p.lbsms.url, timeout_s=timeout) for p in platforms if p.lbsms}
    sender = Sender(
        pool=kernel.pg,
        cbcs=cbcs,
        lbsms=lbsms,
        retry_min_s=settings.retry_min_s,
        retry_max_s=settings.retry_max_s,
        lease_s=settings.lease_s,
    )
    broadcasts = Broadcasts(
        pool=kernel.pg,
        sender=sender,
        platforms=Platforms(
            cbc=frozenset(cbcs),
            lbsms=frozenset(lbsms),
            lbsms_polygon=frozenset(
                p.operator for p in platforms if p.lbsms and p.lbsms.zone == "polygon"
            ),
        ),
        answer_wait_s=settings.answer_wait_s,
    )
    cellbroadcast_pb2_grpc.add_CellBroadcastServiceServicer_to_server(
        CellBroadcastServicer(broadcasts), kernel.server
    )
    kernel.add_service_name(
        cellbroadcast_pb2.DESCRIPTOR.services_by_name["CellBroadcastService"].full_name
    )
    kernel.add_background(sender.run_sweeps(every_s=settings.sweep_s), name="cb-sweeps")
    kernel.on_shutdown(sender.stop)
    await asyncio.sleep(0)


def main() -> None:
    """Run the cell-broadcast service until SIGTERM."""
    run_service(name="cellbroadcast", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()
