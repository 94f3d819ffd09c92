# syntax=docker/dockerfile:1
# The hamlet image: server, gateway and simulator in one venv, for amd64 and arm64 alike
# (docker buildx build --platform linux/amd64,linux/arm64 .). Every package is pinned by
# constraints.txt and installed here, at build time: a container installs nothing when it
# starts and needs no internet.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compile what has no wheel for the target platform, install into /opt/hamlet ---
FROM ${PYTHON_IMAGE} AS build
# A C toolchain only in this stage: a package without a wheel for this platform still builds.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/hamlet
WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY hamlet ./hamlet
COPY gateway ./gateway
COPY server ./server
COPY firmware_sim ./firmware_sim
RUN /opt/hamlet/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/hamlet/bin/pip install --no-cache-dir -c constraints.txt ".[server,gateway,sim]" \
 && /opt/hamlet/bin/hamlet --help > /dev/null

# --- runtime: the venv, an unprivileged user, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 hamlet \
 && useradd --system --uid 10001 --gid hamlet --home-dir /data --shell /usr/sbin/nologin hamlet \
 && install -d -o hamlet -g hamlet -m 0750 /data
COPY --from=build /opt/hamlet /opt/hamlet
COPY examples/server-influxdb.toml /etc/hamlet/server-influxdb.toml
COPY examples/server.toml /etc/hamlet/server.toml
ENV PATH=/opt/hamlet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HAMLET_SERVER__DATA_DIR=/data
USER hamlet
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["hamlet"]
CMD ["server", "run", "--config", "/etc/hamlet/server.toml", "--host", "0.0.0.0", "--port", "8000"]
