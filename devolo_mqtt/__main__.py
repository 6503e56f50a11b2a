"""`python -m devolo_mqtt`."""

import sys

from devolo_mqtt.cli import main

sys.exit(main())
