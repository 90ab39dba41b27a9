# Builds both binaries once; each runtime image carries one.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin orderlake-archiver --bin orderlake-server \
 && mkdir -p /out && cp target/release/orderlake-archiver target/release/orderlake-server /out/

# curl answers the compose health checks (GET /ready on the metrics listener).
FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 orderlake
USER orderlake

FROM runtime AS archiver
COPY --from=build /out/orderlake-archiver /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/orderlake-archiver"]

FROM runtime AS server
COPY --from=build /out/orderlake-server /usr/local/bin/
COPY sql /etc/orderlake/sql
ENTRYPOINT ["/usr/local/bin/orderlake-server"]
