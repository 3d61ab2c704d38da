# Dreamer studio for one NVIDIA GPU host: web UI + HTTP API + one worker per GPU.
#   docker compose up -d        (see docs/operators.md)
# Stage 1 builds nvdiffrast from its source with the CUDA toolkit; stage 2 is the slim runtime.
ARG CUDA_VERSION=12.4.1
ARG UBUNTU=ubuntu22.04

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
ARG TORCH_VERSION=2.5.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG NVDIFFRAST_REF=v0.3.3
# Hopper (H100/H200) and Ada/Ampere; trim to your card to build faster
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev git build-essential ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip wheel setuptools \
    && pip install torch==${TORCH_VERSION} --index-url ${TORCH_INDEX}
# nvdiffrast is not on PyPI: build it from its source repository at a pinned tag.
RUN git clone --depth 1 --branch ${NVDIFFRAST_REF} https://github.com/NVlabs/nvdiffrast.git /src/nvdiffrast \
    && pip wheel --no-deps --no-build-isolation -w /wheels /src/nvdiffrast
WORKDIR /src/dreamer
COPY pyproject.toml README.md ./
COPY dreamer/ dreamer/
COPY renderers/ renderers/
COPY app/ app/
COPY presets/ presets/
RUN pip install /wheels/*.whl ".[cuda,studio]"

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv libgl1 libglib2.0-0 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# nvdiffrast and gsplat compile CUDA kernels at first use on some versions: keep the
# compiler out of the runtime image, so use the CUDA context (never OpenGL) and warm up once.
RUN groupadd --gid 1000 dreamer && useradd --uid 1000 --gid dreamer --create-home dreamer
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=dreamer:dreamer /src/dreamer /opt/dreamer
COPY --chown=dreamer:dreamer assets/ /opt/dreamer/assets/
WORKDIR /opt/dreamer
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/models/huggingface \
    DREAMER_CACHE=/models/dreamer \
    DREAMER_STUDIO_ROOT=/data/studio \
    DREAMER_PRESETS=/opt/dreamer/presets \
    DREAMER_ASSETS=/opt/dreamer/assets
RUN mkdir -p /models /data && chown dreamer:dreamer /models /data
# model weights and the output store live on volumes, outside the image
VOLUME ["/models", "/data"]
USER dreamer
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS http://127.0.0.1:7860/api/v1/health || exit 1
ENTRYPOINT ["python", "-m", "app.server"]
CMD ["--host", "0.0.0.0", "--port", "7860"]
