# The Polder container image: the static binary FROM scratch, with nothing
# pulled from a registry. Build it with `make image`: it builds bin/polder
# outside Docker and lays out the build context in bin/image/ (the binary
# as rootfs/polder, the build host's CA bundle, an empty /tmp), then runs
#   docker build -t polder:latest -f Dockerfile bin/image
#
# The entrypoint is `polder container` (docs/federation.md, "Container image
# and Complement"): `polder serve` with SERVER_NAME as the server name, and
# Complement mode when Complement's CA is mounted at /complement/ca.
#
# /data is deliberately not a VOLUME: Complement commits containers into
# images, and a volume's contents would not be committed. Mount one there
# yourself (docker run -v polder-data:/data ...).
FROM scratch
COPY rootfs/ /
ENV POLDER_LISTEN=0.0.0.0:8008 \
    POLDER_DATA_DIR=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8008 8448
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 CMD ["/polder", "healthcheck"]
ENTRYPOINT ["/polder", "container"]
