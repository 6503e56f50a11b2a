"""The devices: the client (the only importer of devolo-plc-api), one actor per device, the registry
of devices, adapters without an API, and mDNS discovery."""
