#!/usr/bin/env bash
# Build deploy/Dockerfile with podman on a base made from Debian's own packages, then smoke-test
# the image as its unprivileged user: the launchers import, the pipelines validate, and the
# image's gRPC code server answers a health check. Needs root, and takes a few minutes.
#
# Where containers cannot run (no cgroup v2 delegation, no setrlimit: podman's default "oci"
# isolation fails at the first RUN), buildah's chroot isolation still runs each RUN step; the
# smoke test is therefore a RUN step of a second build, on the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."

base=localhost/datapipe-base:bookworm
work="${DATAPIPE_SMOKE_DIR:-/var/tmp/datapipe-podman-smoke}"
mkdir -p "$work"
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap >/dev/null
fi
# The stand-in for python:3.11-slim-bookworm: Debian 12's Python 3.11, from Debian's packages.
if ! podman image exists "$base"; then
    rm -rf "$work/root"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/root" \
        http://deb.debian.org/debian >"$work/debootstrap.log"
    tar -C "$work/root" -c . | podman import - "$base" >/dev/null
fi

# The host's CA bundle and these variables only matter where TLS to PyPI is intercepted by a
# proxy whose certificate the host trusts; they end up in this local smoke image only.
build=(podman build --isolation=chroot
       --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro
       --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env UV_NATIVE_TLS=1)
"${build[@]}" --ignorefile deploy/Dockerfile.dockerignore -f deploy/Dockerfile \
    --build-arg PYTHON_IMAGE="$base" -t localhost/datapipe:smoke .

# A port of its own: RUN steps share the host's network under chroot isolation. The server is
# killed outright: started with & by a non-interactive shell it ignores SIGINT, and Dagster
# turns SIGTERM into SIGINT.
port=$((40000 + RANDOM % 20000))
"${build[@]}" --no-cache -t localhost/datapipe:smoke-checked -f - "$work" <<CONTAINERFILE
FROM localhost/datapipe:smoke
RUN test "\$(id -u)" = 10001 \\
    && python -c "import dagster_aws.ecs, dagster_docker, dagster_k8s" \\
    && datapipe validate \\
    && { dagster api grpc -h 127.0.0.1 -p $port -m datapipe_assets.definitions & server=\$!; } \\
    && for _ in \$(seq 90); do dagster api grpc-health-check -p $port >/dev/null 2>&1 && break; sleep 1; done; \\
    dagster api grpc-health-check -p $port; status=\$?; kill -KILL \$server; exit \$status
CONTAINERFILE
echo "smoke test passed: localhost/datapipe:smoke"
