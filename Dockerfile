# Pattern Service on the embedded default (SQLite + qdrant-edge under /data).
# Production backends are selected with TMWS_* variables (see README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMWS_GRPC_ADDRESS=0.0.0.0:50051 \
    TMWS_METRICS_ADDRESS=0.0.0.0:9464 \
    TMWS_DATA_DIR=/data \
    TMWS_MODEL_CACHE_DIR=/app/models

WORKDIR /app
COPY clients/python /app/clients/python
COPY pyproject.toml README.md alembic.ini /app/
COPY alembic /app/alembic
COPY pattern_service /app/pattern_service
RUN pip install --no-cache-dir -e /app/clients/python -e /app \
    && python -m pattern_service prepare-model \
    && useradd --system --home /data pattern && mkdir -p /data && chown pattern /data

USER pattern
VOLUME ["/data"]
EXPOSE 50051 9464
# Migrations run before serving (also on start when TMWS_RUN_MIGRATIONS is true).
CMD ["sh", "-c", "python -m pattern_service migrate && exec python -m pattern_service serve"]
