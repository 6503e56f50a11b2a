"""devolo-mqtt: bring devolo powerline and WiFi adapters to MQTT and Home Assistant."""

__version__ = "0.1.0"
