"""The product catalogue: what each emulated devolo model announces and can do.

Values follow devolo_plc_api 1.6.0 and the field data it is tested against: MT numbers, products,
Features flags (which gate the library's calls) and whether a plcnet API exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from devolo_plc_api.plcnet_api import GHN_SPIRIT, HPAV_PANTHER, HPAV_THUNDERBOLT


@dataclass(frozen=True, slots=True)
class Product:
    """One devolo model as the emulator presents it."""

    key: str
    product: str
    mt: str
    features: tuple[str, ...]
    plcnet: bool
    manageable: bool
    technology: int
    plc_technology_txt: str
    firmware: str
    firmware_date: str

    @property
    def has_wifi(self) -> bool:
        """Whether the model has an access point (the `wifi1` feature)."""
        return "wifi1" in self.features

    @property
    def product_id(self) -> str:
        """The product id as the PLC network overview reports it (`MT` + number)."""
        return f"MT{self.mt}"


_WIFI_FEATURES = ("intmtg1", "led", "reset", "restart", "support", "update", "wifi1")
_LAN_FEATURES = ("intmtg1", "led", "reset", "restart", "support", "update")

PRODUCTS: dict[str, Product] = {
    p.key: p
    for p in (
        Product(
            "magic2_wifi_next",
            "devolo Magic 2 WiFi next",
            "3056",
            _WIFI_FEATURES,
            True,
            True,
            GHN_SPIRIT,
            "ghn",
            "7.12.5",
            "2022-08-29",
        ),
        Product(
            "magic2_wifi_6",
            "Magic 2 WiFi 6",
            "3187",
            _WIFI_FEATURES,
            True,
            True,
            GHN_SPIRIT,
            "ghn",
            "6.0.1",
            "2023-09-06",
        ),
        # Magic 2 LAN devices have a device API since firmware 7.10, without wifi1.
        Product(
            "magic2_lan",
            "devolo Magic 2 LAN 1-1",
            "3064",
            _LAN_FEATURES,
            True,
            True,
            GHN_SPIRIT,
            "ghn",
            "7.12.5",
            "2022-08-29",
        ),
        Product(
            "dlan1200_wifi_ac",
            "dLAN pro 1200+ WiFi ac",
            "2730",
            ("intmtg1", "led", "reset", "restart", "update", "wifi1"),
            True,
            True,
            HPAV_PANTHER,
            "hpav",
            "5.6.1",
            "2020-10-23",
        ),
        # Repeaters (MT 3046-3049, 3254-3256) have no plcnet API.
        Product(
            "repeater_ac",
            "devolo WiFi Repeater ac+",
            "3046",
            ("led", "reset", "restart", "update", "wifi1", "multiap", "repeater0"),
            False,
            True,
            0,
            "",
            "5.5.1",
            "2020-06-29",
        ),
        # Non-manageable adapters: no API at all, visible only in another device's network overview.
        Product(
            "dlan1200_lan",
            "devolo dLAN 1200+",
            "2639",
            (),
            True,
            False,
            HPAV_PANTHER,
            "hpav",
            "2.8.0.01",
            "2019-07-05",
        ),
        Product(
            "dlan550_lan",
            "devolo dLAN 550 duo+",
            "2646",
            (),
            True,
            False,
            HPAV_THUNDERBOLT,
            "hpav",
            "2.6.0.00",
            "2018-03-01",
        ),
        Product(
            "magic1_lan",
            "devolo Magic 1 LAN 1-1",
            "2829",
            (),
            True,
            False,
            GHN_SPIRIT,
            "ghn",
            "7.8.0",
            "2021-04-01",
        ),
    )
}
