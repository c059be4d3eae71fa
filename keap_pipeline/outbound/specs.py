"""The entities the pusher sends, in the order it sends them (tags before the contacts that may carry them)."""

from __future__ import annotations

from types import MappingProxyType

from keap_pipeline.outbound.contacts import ContactsOutbound
from keap_pipeline.outbound.spec import OutboundSpec
from keap_pipeline.outbound.tags import TagsOutbound

SPECS: MappingProxyType[str, OutboundSpec] = MappingProxyType({"tags": TagsOutbound(), "contacts": ContactsOutbound()})
# sync_queue.entity_type of the entities that are sent; every other table's items are kept as unsupported
SUPPORTED_TABLES: tuple[str, ...] = tuple(spec.table for spec in SPECS.values())
UNSUPPORTED_REASON = (
    "unsupported: the pusher has no Keap write path for {entity} yet (issue 14 sends contacts and tags); "
    "the item is kept, not sent"
)
