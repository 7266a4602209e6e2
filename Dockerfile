# One image for every role; VEZA_ROLES picks what a container runs.
FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config g++ patch python3 \
      libssl-dev libuv1-dev libsrtp2-dev libusrsctp-dev libabsl-dev nlohmann-json3-dev \
      ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
COPY common/setup ./common/setup
# Builds the mediasoup worker from its npm tarball against Debian's libraries, then npm ci.
RUN node common/setup/ensure.mjs start
COPY . .
RUN node common/setup/ensure.mjs start

ENV VEZA_DATA_DIR=/var/lib/veza
EXPOSE 8080 9090 9091 40000-40100/udp 40000-40100/tcp
CMD ["node", "--import", "tsx", "app/main.ts"]
