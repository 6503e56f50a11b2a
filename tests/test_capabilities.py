"""Invariants of the capability table, the topic scheme and the discovery ledger."""

from __future__ import annotations

import json

import pytest

from devolo_mqtt.core import capabilities
from devolo_mqtt.core.capabilities import CAPABILITIES, SOURCES, parse_minutes, parse_name, parse_on_off
from devolo_mqtt.core.model import API, PLC, PLCNET, Json
from devolo_mqtt.mqtt.ha.configs import DiscoveryLedger
from devolo_mqtt.mqtt.topics import Topics

KNOWN_FEATURES = {
    "",
    "led",
    "wifi1",
    "restart",
    "update",
    "multiap",
    "repeater0",
    "support",
    API,
    PLC,
    PLCNET,
}
HA_COMPONENTS = {"switch", "sensor", "binary_sensor", "number", "button", "update", "text"}


def test_capabilities_keys_are_unique() -> None:
    """No two capabilities share a wire key (zigbee2mqtt's duplicate-id test)."""
    keys = [c.key for c in CAPABILITIES]
    assert len(keys) == len(set(keys))
    assert len({s.name for s in SOURCES}) == len(SOURCES)


def test_capabilities_every_write_has_a_parse_and_known_feature() -> None:
    """Writable keys and actions parse their payload; every gate is a known feature; no factory reset."""
    for capability in CAPABILITIES:
        assert capability.feature in KNOWN_FEATURES, capability.key
        assert (capability.write is None) == (capability.parse is None), capability.key
        if capability.kind == "action":
            assert capability.writable and capability.value is None, capability.key
        assert "reset" not in capability.key
        for source in capability.refresh:
            assert source in capabilities.SOURCE_BY_KEY, (capability.key, source)
        if capability.ha is not None:
            assert capability.ha.component in HA_COMPONENTS
            if capability.ha.component == "update":  # installed version and install action are keys
                assert capability.ha.installed_key in capabilities.BY_KEY, capability.key
                assert capabilities.BY_KEY[str(capability.ha.install_key)].kind == "action", capability.key
    for each in SOURCES:
        assert each.feature in KNOWN_FEATURES


def test_capabilities_contract_writable_keys_and_actions() -> None:
    """The writable keys and actions are exactly the contract's."""
    writable = {c.key for c in CAPABILITIES if c.writable and c.kind == "state"}
    actions = {c.key for c in CAPABILITIES if c.kind == "action"}
    assert writable == {"leds", "locate", "guest_wifi", "guest_duration", "name"}
    assert actions == {"refresh", "restart", "pair", "wps", "install_update"}


def test_capabilities_value_parsers() -> None:
    """ON/OFF, minutes and names parse the forms users send and refuse the rest."""
    assert parse_name("  Office 2 ") == "Office 2" and parse_name(42) == "42"
    for bad_name in ("", "   ", "x" * 33, "tab\there", None, True):
        with pytest.raises(ValueError, match="name"):
            parse_name(bad_name)
    assert parse_on_off("on") is True and parse_on_off(False) is False and parse_on_off("0") is False
    assert parse_minutes("90") == 90 and parse_minutes(0) == 0
    for bad in ("maybe", None, 2):
        try:
            parse_on_off(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    for bad_minutes in (-1, 1441, 1.5, "x", True):
        try:
            parse_minutes(bad_minutes)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad_minutes!r}")


def test_topics_parse_set_only_matches_commands() -> None:
    """Command topics parse; results, bridge topics and other bases do not."""
    topics = Topics("devolo")
    assert topics.parse_set("devolo/123/set") == ("123", None)
    assert topics.parse_set("devolo/123/set/leds") == ("123", "leds")
    for other in (
        "devolo/123/set/result",
        "devolo/bridge/set",
        "other/123/set",
        "devolo/123",
        "devolo/1/2/set",
    ):
        assert topics.parse_set(other) is None, other


def test_ledger_publishes_only_changes_and_clears_removed() -> None:
    """Same configs twice → nothing; a vanished entity → empty payload; earlier runs' leftovers cleared."""
    ledger = DiscoveryLedger()
    a = {
        "ha/switch/devolo_1/leds/config": {"name": "LEDs"},
        "ha/switch/devolo_1/locate/config": {"name": "L"},
    }
    assert len(ledger.update("devolo_1", a)) == 2
    assert ledger.update("devolo_1", a) == []
    smaller = {"ha/switch/devolo_1/leds/config": {"name": "LEDs"}}
    assert ledger.update("devolo_1", smaller) == [("ha/switch/devolo_1/locate/config", b"")]
    # A leftover of a node this run already published is stale at once; of an unknown node, remembered.
    assert ledger.found_on_broker("ha/sensor/devolo_1/old/config", json.dumps({"x": 1}).encode()) is True
    assert ledger.found_on_broker("ha/sensor/devolo_9/gone/config", b"{}") is False
    assert ledger.found_on_broker("ha/sensor/devolo_8/late/config", b"{}") is False
    assert ledger.update("devolo_8", {}) == [("ha/sensor/devolo_8/late/config", b"")]  # it showed up
    assert ledger.sweep({"devolo_1"}) == ["ha/sensor/devolo_9/gone/config"]


def test_capabilities_announcements_name_existing_keys_and_fire_once() -> None:
    """An announcing capability names a real state key; its event comes when it turns True, not again."""
    for capability in capabilities.CAPABILITIES:
        if capability.announce:
            assert capability.announce[1] in capabilities.BY_KEY
    before: dict[str, Json] = {"update_available": False, "next_firmware": ""}
    after: dict[str, Json] = {"update_available": True, "next_firmware": "7.14"}
    assert capabilities.announcements(before, after) == [("firmware_available", "7.14")]
    assert capabilities.announcements(after, after) == []
