"""Home Assistant discovery on the wire: turns devices into configs with the pure builders of
`homeassistant.py`, publishes only what changed (the ledger), and clears, sweeps, purges and
re-publishes on request."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.capabilities import PLC_VIEW
from devolo_mqtt.devices.actor import DeviceActor
from devolo_mqtt.devices.registry import Node
from devolo_mqtt.mqtt.ha import configs
from devolo_mqtt.mqtt.ha.configs import DiscoveryLedger, HaContext, HaDevice, HaLink, known_keys
from devolo_mqtt.mqtt.publisher import Publisher

log = structlog.get_logger("devolo_mqtt.ha")


class HaPublisher:
    """The discovery configs of this bridge instance."""

    def __init__(
        self,
        publisher: Publisher,
        ctx: HaContext,
        *,
        enabled: bool,
        link_name: Callable[[str], str],
        device_name: Callable[[Node], str],
        networks: Callable[[], Mapping[str, str]],
        guest_qr: bool = False,
    ) -> None:
        self._out = publisher
        self._ctx = ctx
        self.enabled = enabled
        self._link_name = link_name
        self._device_name = device_name
        self._networks = networks
        self._guest_qr = guest_qr
        self.ledger = DiscoveryLedger()
        self.swept = False  # stale configs of earlier runs cleared
        self.heard_all = False  # the broker has delivered every retained config (first connection)
        # After `discovery/purge`: configs are kept up to date in the ledger but not sent until
        # `discovery/republish` (otherwise the next change would bring back what the user removed).
        self.purged = False

    @property
    def listening(self) -> bool:
        """Whether to subscribe to the discovery prefix: only at the first connection, to find our
        leftovers of earlier runs among the retained configs (the broker delivers them at once)."""
        return self.enabled and not self.swept and not self.heard_all

    def bridge(self) -> None:
        """The bridge's own entities (its connection; every PLC network's map and weakest link)."""
        if self.enabled:
            bridge = configs.bridge_configs(self._ctx, self._networks())
            self._update("devolo_bridge" + self._ctx.suffix(), bridge)

    def device(self, node: Node) -> None:
        """Every config of one device (only the changed ones go out; vanished entities are emptied)."""
        if self.enabled:
            self._update(f"devolo_{node.id}", configs.device_configs(self._ctx, self._ha_device(node)))

    def discovered(self, node: Node) -> bool:
        """Whether this node's configs were published (or are held back by a purge)."""
        return self.ledger.has_node(f"devolo_{node.id}")

    def tracker(self, mac: str, name: str | None, vendor: str | None) -> None:
        """A WiFi client's device tracker."""
        if self.enabled:
            topic, payload = configs.tracker_config(self._ctx, mac, name, vendor)
            self._update(self._ctx.topics.discovery_node(topic), {topic: payload})

    def _update(self, owner: str, configs: dict[str, configs.Payload]) -> None:
        for topic, text in self.ledger.update(owner, configs):
            if not self.purged:
                self._out.config(topic, text)

    def seen_on_broker(self, topic: str, payload: bytes) -> None:
        """A retained config under the discovery prefix: ours from an earlier run? Stale already?"""
        if (not payload or configs.is_ours(self._ctx, payload)) and self.ledger.found_on_broker(
            topic, payload
        ):
            log.info("discovery_stale_cleared", topic=topic)
            self._out.config(topic, "")

    def sweep(self, keep: set[str]) -> None:
        """Clear this bridge's configs of earlier runs whose node is not in `keep` (once)."""
        self.swept = True
        for topic in self.ledger.sweep({*keep, "devolo_bridge" + self._ctx.suffix()}):
            log.info("discovery_stale_cleared", topic=topic)
            self._out.config(topic, "")

    def republish(self) -> int:
        """Every current config again (after a purge too); how many."""
        self.purged = False
        items = self.ledger.republish()
        for topic, text in items:
            self._out.config(topic, text, force=True)
        return len(items)

    def purge(self) -> int:
        """Empty every config of this bridge, and send none until `republish`; how many."""
        self.purged = True
        topics = [*self.ledger.published, *self.ledger.found]
        for topic in topics:
            self._out.config(topic, "")
        self.ledger.forget_found()
        return len(topics)

    def _known(self, node: Node) -> frozenset[str] | None:
        """The state keys whose entities may be published: those with a value, and those whose config is
        out already (this run's, or an earlier run's found on the broker: emptying it until the value
        is read again would make Home Assistant delete the entity, and the user's settings with it)."""
        if not isinstance(node, DeviceActor):
            return None
        return known_keys(node.current_state()) | self.ledger.object_ids(f"devolo_{node.id}")

    def _ha_device(self, node: Node) -> HaDevice:
        identity = node.identity
        plc = node.data(PLC_VIEW)
        links = (
            tuple(
                HaLink(dst, self._link_name(dst), enabled=bool({identity.mac, dst} & plc.router_macs))
                for dst in sorted(plc.links)
            )
            if plc
            else ()
        )
        return HaDevice(
            links=links,
            id=node.id,
            serial=identity.serial,
            name=self._device_name(node),
            model=identity.product,
            mt=identity.mt,
            firmware=node.firmware,
            mac=identity.mac,
            ip=identity.ip,
            capabilities=tuple(capabilities.supported(identity, node.unsupported)),
            guest_qr=self._guest_qr and identity.supports(capabilities.WIFI),
            events=capabilities.device_events(identity),
            known=self._known(node),
        )
