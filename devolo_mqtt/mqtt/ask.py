"""Asking a running bridge over MQTT from the command line (`devolo-mqtt diagnostics`): one request on
`bridge/request/<op>`, the answer with the same transaction from `bridge/response/<op>`."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiomqtt

from devolo_mqtt.core.errors import DevoloMqttError
from devolo_mqtt.core.inbound import BadPayload, decode_json
from devolo_mqtt.mqtt.session import tls_context
from devolo_mqtt.mqtt.topics import Topics
from devolo_mqtt.settings import Settings


class NoAnswerError(DevoloMqttError):
    """No bridge answered in time (or the broker could not be reached)."""


async def ask_bridge(settings: Settings, op: str, *, within: float = 10.0) -> dict[str, Any]:
    """The `data` of a running bridge's answer to `bridge/request/<op>`."""
    s = settings.mqtt
    topics = Topics(s.base_topic)
    transaction = secrets.token_hex(8)
    try:
        async with (
            asyncio.timeout(within),
            aiomqtt.Client(
                s.host,
                s.port,
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                identifier=f"devolo-mqtt-cli-{transaction}",
                tls_context=tls_context(s),
                protocol=aiomqtt.ProtocolVersion.V5 if s.protocol == "5" else aiomqtt.ProtocolVersion.V311,
                timeout=within,
            ) as client,
        ):
            await client.subscribe(topics.bridge_response(op), qos=1)
            await client.publish(topics.bridge_request(op), json.dumps({"transaction": transaction}), qos=1)
            async for message in client.messages:
                answer = _decode(message.payload)
                if answer.get("transaction") != transaction:
                    continue  # someone else's request
                if answer.get("status") != "ok":
                    raise NoAnswerError(f"the bridge answered with an error: {answer.get('error')}")
                data = answer.get("data")
                return data if isinstance(data, dict) else {"data": data}
    except TimeoutError:
        raise NoAnswerError(
            f"no bridge answered on {topics.bridge_response(op)} within {within:g} s "
            f"(is one running with base_topic {s.base_topic!r} on {s.host}:{s.port}?)"
        ) from None
    except aiomqtt.MqttError as err:
        raise NoAnswerError(f"cannot reach the broker at {s.host}:{s.port}: {err}") from None
    raise NoAnswerError("the broker closed the connection")


def _decode(payload: Any) -> dict[str, Any]:
    """An answer as JSON (anyone can publish on the response topic: bounded, never raising)."""
    try:
        value = decode_json(
            payload if isinstance(payload, bytes) else str(payload).encode(), max_bytes=1 << 24
        )
    except BadPayload:
        return {}
    return value if isinstance(value, dict) else {}
