FROM python:3.11-slim
WORKDIR /app
# .dockerignore keeps .venv, data/ and .git out.
COPY . .
# Editable install: migrations/ and web/ are read from /app.
RUN pip install --no-cache-dir -e .
# Run as an unprivileged user that owns only the data directory. A named volume mounted
# on /data takes this ownership when it is first created (see docs/self-hosting.md,
# "Upgrades", for a volume created by an older image that ran as root).
RUN useradd --system --uid 10001 --home-dir /data --no-create-home pulseroom \
    && mkdir -p /data && chown pulseroom /data
USER pulseroom
ENV PULSEROOM_HOST=0.0.0.0 PULSEROOM_PORT=8080 PULSEROOM_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# Liveness (docker-compose.yml sets its own): /healthz answers while the process serves.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PULSEROOM_PORT', '8080'), timeout=3)"]
CMD ["pulseroom", "serve"]
