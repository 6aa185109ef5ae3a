"""The delivery service's two stores over one pool, as the tests drive them."""

from typing import NamedTuple

from psycopg_pool import AsyncConnectionPool

from services.delivery.delivery_log import DeliveryLog
from services.delivery.endpoint_store import EndpointStore
from tests.sealing import BOX


class Stores(NamedTuple):
    endpoints: EndpointStore
    log: DeliveryLog


def delivery_stores(pool: AsyncConnectionPool, ttl_s: float = 5.0) -> Stores:
    return Stores(EndpointStore(pool, ttl_s, box=BOX), DeliveryLog(pool))
