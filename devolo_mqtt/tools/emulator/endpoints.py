"""Every device API endpoint devolo_plc_api calls (except factory reset), answered from the world.

Bodies are built with the library's own protobuf messages, so the wire format is the library's.
Each endpoint declares the Features flag (or plcnet API) that gates it and whether it needs the
password: reads are open except `UptimeGet`; anything that changes the device needs digest auth.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from devolo_plc_api.device_api.ledsettings_pb2 import LedSettingsGet, LedSettingsSet, LedSettingsSetResponse
from devolo_plc_api.device_api.multiap_pb2 import WifiMultiApGetResponse
from devolo_plc_api.device_api.restart_pb2 import RestartResponse, UptimeGetResponse
from devolo_plc_api.device_api.support_pb2 import SupportInfoDump, SupportInfoDumpResponse
from devolo_plc_api.device_api.updatefirmware_pb2 import UpdateFirmwareCheck, UpdateFirmwareStart
from devolo_plc_api.device_api.wifinetwork_pb2 import (
    WIFI_BAND_2G,
    WIFI_BAND_5G,
    WIFI_VAP_GUEST_AP,
    WIFI_VAP_MAIN_AP,
    WPA_2,
    WifiConnectedStationsGet,
    WifiGuestAccessGet,
    WifiGuestAccessSet,
    WifiGuestAccessSetResponse,
    WifiNeighborAPsGet,
    WifiRepeatedAPsGet,
    WifiRepeaterWpsClonePbcStart,
    WifiResult,
    WifiWpsPbcStart,
)
from devolo_plc_api.plcnet_api.getnetworkoverview_pb2 import GetNetworkOverview
from devolo_plc_api.plcnet_api.identifydevice_pb2 import (
    IdentifyDeviceResponse,
    IdentifyDeviceStart,
    IdentifyDeviceStop,
)
from devolo_plc_api.plcnet_api.pairdevice_pb2 import PairDeviceResponse, PairDeviceStart
from devolo_plc_api.plcnet_api.setuserdevicename_pb2 import SetUserDeviceName, SetUserDeviceNameResponse
from google.protobuf.message import DecodeError, Message

from devolo_mqtt.tools.emulator.world import EmulatedDevice, World, colon_mac

Handler = Callable[[World, EmulatedDevice, bytes], Message]
_M = TypeVar("_M", bound=Message)
PLCNET = "plcnet"  # pseudo feature: the device has a plcnet API


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint: its gate, whether it needs the password, and its handler."""

    feature: str
    auth: bool
    handler: Handler


def _parse(message: _M, body: bytes) -> _M:
    # A garbled request leaves the default message, which a real device answers with a failure result.
    with contextlib.suppress(DecodeError):
        message.ParseFromString(body)
    return message


def _led_get(world: World, device: EmulatedDevice, _: bytes) -> Message:
    return LedSettingsGet(state=LedSettingsGet.LED_ON if device.leds else LedSettingsGet.LED_OFF)


def _led_set(world: World, device: EmulatedDevice, body: bytes) -> Message:
    device.leds = _parse(LedSettingsSet(), body).state == LedSettingsSet.LED_ON
    return LedSettingsSetResponse(result=LedSettingsSetResponse.SUCCESS)


def _multi_ap(world: World, device: EmulatedDevice, _: bytes) -> Message:
    controller = next((d for d in world.devices.values() if d.spec.attached_to_router and d.ip), device)
    return WifiMultiApGetResponse(
        enabled=True,
        controller_id=colon_mac(controller.plc_mac or "0" * 12),
        controller_ip=controller.ip or "",
    )


def _repeated_aps(world: World, device: EmulatedDevice, _: bytes) -> Message:
    ap = WifiRepeatedAPsGet.RepeatedAPInfo(
        mac_address="AA:BB:CC:DD:EE:01",
        ssid="home",
        band=WIFI_BAND_5G,
        channel=36,
        rate=866000,
        signal=-55,
        signal_bars=4,
    )
    return WifiRepeatedAPsGet(repeated_aps=[ap])


def _wps_clone(world: World, device: EmulatedDevice, _: bytes) -> Message:
    return WifiRepeaterWpsClonePbcStart(result=WifiResult.WIFI_SUCCESS)


def _restart(world: World, device: EmulatedDevice, _: bytes) -> Message:
    uptime = world.uptime(device)
    world.restart(device)
    return RestartResponse(result=RestartResponse.SUCCESS, uptime=uptime)


def _uptime(world: World, device: EmulatedDevice, _: bytes) -> Message:
    return UptimeGetResponse(uptime=world.uptime(device))


def _support(world: World, device: EmulatedDevice, _: bytes) -> Message:
    """A support dump shaped like a real one: the G.hn chip's configlayer (`KEY=value` run together,
    lists comma-separated, per-node lists indexed by device id) among the host's other items, about
    40 KB in all. The values the library extracts come from `device.health`; the domain master (the
    router-attached adapter here) has no hops, no uplink and loses no MAPs."""
    h = device.health
    master = device.spec.attached_to_router
    lengths = ",".join("0" if i != 1 else str(int(h["wire_length"])) for i in range(16))
    layer = (
        b"DIDMNG.GENERAL.NUM_DIDS=16"
        + f"DIDMNG.GENERAL.WIRE_LENGTH={lengths}".encode()
        + f"MASTERSELECTION.DOMAIN.LOST_MAPS={0 if master else int(h['lost_maps'])}".encode()
        + f"NDIM.GENERAL.N_VISIBLE_DOMAINS={int(h['domains'])}".encode()
        + f"NODE.GENERAL.NUM_HOPS={0 if master else int(h['hops'])}".encode()
        + f"NODE.GENERAL.PROXY_DEVICE_ID={0 if master else 1}".encode()
        + f"TEMPSENSORS.GENERAL.MEASURE={round(h['temperature'] * 100)}".encode()
        + b"".join(
            f"PHY.CHANNEL{i}.SNR={','.join(str(30 + (i * j) % 9) for j in range(64))}".encode()
            for i in range(24)
        )
    )
    items = [
        *([SupportInfoDump.SupportInfoItem(label="configlayer", content=layer)] if device.plc_mac else []),
        SupportInfoDump.SupportInfoItem(label="dmesg", content=b"[    0.000000] Booting Linux\n" * 600),
        SupportInfoDump.SupportInfoItem(
            label="ps", content=b"  PID USER  COMMAND\n" + b"  123 root  dvlhpd\n" * 200
        ),
    ]
    return SupportInfoDumpResponse(result=SupportInfoDumpResponse.SUCCESS, info=SupportInfoDump(items=items))


def _fw_check(world: World, device: EmulatedDevice, _: bytes) -> Message:
    update = device.spec.update
    if update is None or not world.update_available(device):
        return UpdateFirmwareCheck(result=UpdateFirmwareCheck.UPDATE_NOT_AVAILABLE)
    return UpdateFirmwareCheck(
        result=UpdateFirmwareCheck.UPDATE_AVAILABLE, new_firmware_version=f"{update.version}_{update.date}"
    )


def _fw_start(world: World, device: EmulatedDevice, _: bytes) -> Message:
    started = world.start_update(device)
    return UpdateFirmwareStart(
        result=UpdateFirmwareStart.UPDATE_STARTED if started else UpdateFirmwareStart.UPDATE_NOT_AVAILABLE
    )


def _stations(world: World, device: EmulatedDevice, _: bytes) -> Message:
    return WifiConnectedStationsGet(
        connected_stations=[
            WifiConnectedStationsGet.ConnectedStationInfo(
                mac_address=s.mac,
                vap_type=WIFI_VAP_GUEST_AP if s.wifi == "guest" else WIFI_VAP_MAIN_AP,
                band=WIFI_BAND_2G if s.band == "2.4" else WIFI_BAND_5G,
                rx_rate=s.rate,
                tx_rate=s.rate,
            )
            for s in world.stations_of(device.serial)
        ]
    )


def _guest_get(world: World, device: EmulatedDevice, _: bytes) -> Message:
    guest = device.guest
    assert guest is not None
    return WifiGuestAccessGet(
        enabled=guest.enabled,
        remaining_duration=guest.remaining_minutes(world.now),
        ssid=guest.ssid,
        key=guest.key,
        wpa=WPA_2,
    )


def _guest_set(world: World, device: EmulatedDevice, body: bytes) -> Message:
    request = _parse(WifiGuestAccessSet(), body)
    world.set_guest(device, request.enable, request.duration)
    return WifiGuestAccessSetResponse(result=WifiResult.WIFI_SUCCESS)


def _neighbors(world: World, device: EmulatedDevice, _: bytes) -> Message:
    rng = random.Random(device.serial)
    return WifiNeighborAPsGet(
        neighbor_aps=[
            WifiNeighborAPsGet.NeighborAPInfo(
                mac_address=f"02:00:5E:10:00:{i:02X}",
                ssid=f"neighbour-{i}",
                band=WIFI_BAND_2G,
                channel=rng.choice([1, 6, 11]),
                signal=rng.randint(-90, -60),
                signal_bars=rng.randint(1, 3),
            )
            for i in range(rng.randint(1, 4))
        ]
    )


def _wps(world: World, device: EmulatedDevice, _: bytes) -> Message:
    return WifiWpsPbcStart(result=WifiResult.WIFI_SUCCESS)


def _overview(world: World, device: EmulatedDevice, _: bytes) -> Message:
    members = world.network_members(device)
    devices = [
        GetNetworkOverview.Device(
            product_name=m.product.product,
            product_id=m.product.product_id,
            friendly_version=m.firmware,
            full_version=f"{m.product.key} {m.firmware}_{m.firmware_date}",
            user_device_name=m.name,
            mac_address=m.plc_mac or "",
            topology=GetNetworkOverview.Device.LOCAL if m is device else GetNetworkOverview.Device.REMOTE,
            technology=m.product.technology,  # type: ignore[arg-type]
            ipv4_address=m.ip or "",
            attached_to_router=m.spec.attached_to_router,
            bridged_devices=[colon_mac(mac) for mac in sorted(m.wired)] if m.reachable(world.now) else [],
        )
        for m in members
    ]
    macs = {m.plc_mac for m in members}
    rates = [
        GetNetworkOverview.DataRate(
            mac_address_from=src, mac_address_to=dst, tx_rate=link.tx, rx_rate=link.rx
        )
        for (src, dst), link in world.links.items()
        if src in macs and dst in macs
    ]
    return GetNetworkOverview(network=GetNetworkOverview.LogicalNetwork(devices=devices, data_rates=rates))


def _identify(start: bool) -> Handler:
    def handler(world: World, device: EmulatedDevice, body: bytes) -> Message:
        request = _parse(IdentifyDeviceStart() if start else IdentifyDeviceStop(), body)
        if request.mac_address != device.plc_mac:
            return IdentifyDeviceResponse(result=IdentifyDeviceResponse.MACADDR_UNKNOWN)
        world.locate(device, start)
        return IdentifyDeviceResponse(result=IdentifyDeviceResponse.SUCCESS)

    return handler


def _pair(world: World, device: EmulatedDevice, body: bytes) -> Message:
    if _parse(PairDeviceStart(), body).mac_address != device.plc_mac:
        return PairDeviceResponse(result=PairDeviceResponse.MACADDR_UNKNOWN)
    device.pairing_until = world.now + 180
    return PairDeviceResponse(result=PairDeviceResponse.SUCCESS)


def _set_name(world: World, device: EmulatedDevice, body: bytes) -> Message:
    request = _parse(SetUserDeviceName(), body)
    target = world.by_mac(request.mac_address)
    if target is None:
        return SetUserDeviceNameResponse(result=SetUserDeviceNameResponse.MACADDR_UNKNOWN)
    target.name = request.user_device_name
    return SetUserDeviceNameResponse(result=SetUserDeviceNameResponse.SUCCESS)


DEVICE_API: dict[str, Endpoint] = {
    "LedSettingsGet": Endpoint("led", False, _led_get),
    "LedSettingsSet": Endpoint("led", True, _led_set),
    "WifiMultiApGet": Endpoint("multiap", False, _multi_ap),
    "WifiRepeatedAPsGet": Endpoint("repeater0", False, _repeated_aps),
    "WifiRepeaterWpsClonePbcStart": Endpoint("repeater0", True, _wps_clone),
    "Restart": Endpoint("restart", True, _restart),
    "UptimeGet": Endpoint("restart", True, _uptime),
    "SupportInfoDump": Endpoint("support", False, _support),
    "UpdateFirmwareCheck": Endpoint("update", False, _fw_check),
    "UpdateFirmwareStart": Endpoint("update", True, _fw_start),
    "WifiConnectedStationsGet": Endpoint("wifi1", False, _stations),
    "WifiGuestAccessGet": Endpoint("wifi1", False, _guest_get),
    "WifiGuestAccessSet": Endpoint("wifi1", True, _guest_set),
    "WifiNeighborAPsGet": Endpoint("wifi1", False, _neighbors),
    "WifiWpsPbcStart": Endpoint("wifi1", True, _wps),
}

PLCNET_API: dict[str, Endpoint] = {
    "GetNetworkOverview": Endpoint(PLCNET, False, _overview),
    "IdentifyDeviceStart": Endpoint(PLCNET, True, _identify(start=True)),
    "IdentifyDeviceStop": Endpoint(PLCNET, True, _identify(start=False)),
    "PairDeviceStart": Endpoint(PLCNET, True, _pair),
    "SetUserDeviceName": Endpoint(PLCNET, True, _set_name),
}
