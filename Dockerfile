# devolo-mqtt: install into a virtualenv in one stage and copy only that virtualenv into a clean slim
# image, so neither build tools nor wheel files end up in a layer of the final image.
FROM python:3.12-slim AS build
RUN python -m venv /opt/devolo-mqtt
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY devolo_mqtt ./devolo_mqtt
RUN /opt/devolo-mqtt/bin/pip install --no-cache-dir . \
    && /opt/devolo-mqtt/bin/pip uninstall --yes pip

FROM python:3.12-slim
# A fixed, documented user and group (1000:1000): files it writes in the data volume belong to them,
# and ./config must be readable by them (see the README's Docker section).
ARG UID=1000
ARG GID=1000
RUN groupadd --gid "${GID}" devolo \
    && useradd --uid "${UID}" --gid "${GID}" --no-create-home --home-dir /data --shell /usr/sbin/nologin devolo \
    && mkdir -p /config /data && chown "${UID}:${GID}" /data
COPY --from=build /opt/devolo-mqtt /opt/devolo-mqtt
ENV PATH=/opt/devolo-mqtt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEVOLO_MQTT_DATA_DIR=/data
USER devolo
# Data (network ids, MAC names, known devices and WiFi clients, the health heartbeat) lives in a
# volume. DEVOLO_MQTT_DATA_DIR wins over `data_dir` in the config file (environment before file).
VOLUME ["/config", "/data"]
# Healthy only while the running bridge is really connected to the broker. (Podman keeps a
# HEALTHCHECK only in Docker's image format: build with `podman build --format docker`.)
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["devolo-mqtt", "health"]
ENTRYPOINT ["devolo-mqtt"]
CMD ["run", "--config", "/config/config.yaml"]
