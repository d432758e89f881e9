"""Every service's contract, declared once: its RPCs (subject, types, timeout, errors).

- :mod:`.rpc`: how an RPC is declared (:class:`Rpc` on a :class:`Contract`), called (an
  instance of the contract is the typed client) and served (:class:`Bindings`).
- :mod:`.bus`: what carries it — :class:`NatsBus` in every process, :class:`MemoryBus`
  for unit tests of handlers.
- :mod:`.chat`, :mod:`.ingest`, :mod:`.metering`, :mod:`.webhooks`: the declarations, one module per owner.
"""

from obdal_common.contract.bus import Bus, MemoryBus, NatsBus
from obdal_common.contract.chat import Chat
from obdal_common.contract.ingest import Ingest
from obdal_common.contract.metering import Metering
from obdal_common.contract.rpc import Bindings, Contract, Rpc
from obdal_common.contract.webhooks import Webhooks

__all__ = [
    "Bindings",
    "Bus",
    "Chat",
    "Contract",
    "Ingest",
    "MemoryBus",
    "Metering",
    "NatsBus",
    "Rpc",
    "Webhooks",
]
