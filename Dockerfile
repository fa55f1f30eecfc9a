# The reference shop for docker-compose.yml: one image, three services. The compose file
# passes the service name (catalog, orders or gateway) and configures it with SHOP_*
# environment variables, exactly as the native supervisor does.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY resilience ./resilience
RUN pip install '.[shop]'
USER nobody
ENTRYPOINT ["python", "-m", "resilience.shop"]
