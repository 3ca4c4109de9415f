# One image for the gateway, the processors and the load tester:
#   docker build -t hopline .
#   docker run --rm hopline gateway --help
#
# Two stages: the builder has a compiler (for any dependency without a wheel on the
# target platform) and fills /opt/venv; the runtime stage gets only that venv.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Unpinned on purpose: the base image's Debian release fixes the compiler's version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone: editing the source reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt

# Then the source (.dockerignore lets only the packages through) and hopline itself.
COPY . .
RUN pip install --no-deps . \
    && python -c "import gateway.server, processor.worker, hopline.cli"


FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 hopline \
    && useradd --system --uid 10001 --gid hopline --home-dir /home/hopline --create-home \
        --shell /usr/sbin/nologin hopline
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/hopline

EXPOSE 8000
# `docker stop` / `docker compose down` send SIGTERM; hopline drains in-flight requests
# (up to HOPLINE_DRAIN_TIMEOUT seconds) and exits 0. A second signal exits at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["hopline"]
CMD ["--help"]
