"""Tools beside the bridge, never imported by it: the device emulator, the demo, the benchmark and
the broker helper."""
