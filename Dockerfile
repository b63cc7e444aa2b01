# The service on a slim Python, as a non-root user, with a health check.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install . && useradd --create-home --uid 10001 fanout \
    && mkdir -p /app/data && chown fanout /app/data
# The default store (SQLite) lives here; mount a volume to keep it across containers.
VOLUME /app/data

USER fanout
ENV HTTP_ADDR=:8080 \
    PRODUCTION=true
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
CMD ["python", "-m", "service"]
