# lbdoctor's image: one image for both roles (`lbdoctor run --role node|cluster`).
#
# Stage 1 builds the wheel and a virtual environment with every dependency; stage 2 is the slim
# runtime: that environment, the node role's rule readers (iptables, nftables) and nothing else.
# The base is pinned by version, the same in both stages, with the Python the tests run on.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/lbdoctor \
 && /opt/lbdoctor/bin/pip install /wheels/lbdoctor-*.whl \
 && /opt/lbdoctor/bin/lbdoctor version

FROM python:3.11.14-slim-bookworm
# What the node role runs to read this node's kube-proxy rules: iptables-save (with the
# iptables-legacy-save and iptables-nft-save backends) from iptables, and nft from nftables.
# tests/ship/test_image.py checks this list against the commands the code invokes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/lbdoctor /opt/lbdoctor
# A non-root default user. Both roles run as it; the Helm chart runs only the node agents'
# kube-proxy-rules sidecar (`lbdoctor dump-rules`) as root with NET_ADMIN and NET_RAW, which reading
# iptables/nftables needs.
RUN groupadd --system --gid 65532 lbdoctor \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin lbdoctor
ENV PATH=/opt/lbdoctor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 9850
# For `docker run`; in Kubernetes the chart's probes on /healthz and /readyz do this.
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('LBDOCTOR_LISTEN', ':9850').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["lbdoctor"]
CMD ["run", "--role", "node"]
