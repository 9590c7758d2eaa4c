# syntax=docker/dockerfile:1
# Feedback Monitor: build the wheel, then install it with its pinned dependencies on a clean base.
#   docker build -t feedback-monitor:0.1.0 .
#   docker run -p 5000:5000 -v feedback-data:/data feedback-monitor:0.1.0
# The base is pinned by version and by digest (the multi-arch index); bump both together.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm@sha256:0a310eeecf4e1f5a0743f9a6520c90c88d089c903ca5fd283f501e3a805f5f89

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# One wheel for the service and one for each dependency, at the versions pyproject.toml pins.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# Only the wheels built above, never the index: the image holds exactly the pinned versions.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels feedback-monitor \
    && groupadd --system --gid 10001 feedback-monitor \
    && useradd --system --uid 10001 --gid feedback-monitor --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin feedback-monitor \
    && mkdir /data && chown feedback-monitor:feedback-monitor /data
ENV FEEDBACK_MONITOR_HOST=0.0.0.0 \
    FEEDBACK_MONITOR_PORT=5000 \
    FEEDBACK_MONITOR_DATA_DIR=/data
VOLUME /data
EXPOSE 5000
USER feedback-monitor:feedback-monitor
# No curl in the slim image: the standard library asks /health; any error or non-2xx exits 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FEEDBACK_MONITOR_PORT', '5000') + '/health', timeout=4)"]
ENTRYPOINT ["feedback-monitor"]
CMD ["serve"]
