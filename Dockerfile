# devolo-mqtt: build wheels in one stage, install them into a clean slim image in the next, so no
# build tools end up in the final image.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY devolo_mqtt ./devolo_mqtt
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --uid 1000 --no-create-home --home-dir /data devolo \
    && mkdir -p /config /data && chown devolo /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER devolo
# Data (network ids, MAC names, known WiFi clients, the health heartbeat) lives in a volume.
ENV DEVOLO_MQTT_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/config", "/data"]
# Healthy only while the running bridge is really connected to the broker.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["devolo-mqtt", "health"]
ENTRYPOINT ["devolo-mqtt"]
CMD ["run", "--config", "/config/config.yaml"]
