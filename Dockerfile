# fcsync: one image for every role (emulator, migrate, worker, beat, webhooks, flower); see
# docker-compose.yml. Build: docker build -t fcsync:local .
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged runtime user; /app is its (writable) working directory.
RUN groupadd --system --gid 10001 fcsync \
    && useradd --system --uid 10001 --gid fcsync --home-dir /app --shell /usr/sbin/nologin fcsync

# Install the project with its [ops] extra (Flower), never [dev], from a throwaway source copy,
# so the code imported at run time is the installed package in site-packages.
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py ./
COPY worker/ worker/
COPY tasks/ tasks/
COPY models/ models/
COPY emulator/ emulator/
COPY migrations/ migrations/
RUN pip install ".[ops]" \
    && rm -rf /src

WORKDIR /app
RUN chown fcsync:fcsync /app
USER fcsync

CMD ["fcsync", "--help"]
