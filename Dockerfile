FROM python:3.11-slim
WORKDIR /app
COPY . .
# Editable install: migrations/ and web/ are read from /app.
RUN pip install --no-cache-dir -e .
ENV PULSEROOM_HOST=0.0.0.0 PULSEROOM_PORT=8080 PULSEROOM_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
CMD ["pulseroom", "serve"]
