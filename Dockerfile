# cooc's CPU image: the statically linked `cooc` and `cooc-serve` binaries on an empty base.
# Nothing is pulled: build the binaries first (tests/containers/build-image.sh does both).
# Runs as a numeric non-root user; works with a read-only root filesystem, no capabilities
# and no-new-privileges (what the Pod Security "restricted" manifests declare).
FROM scratch
COPY cooc cooc-serve /
USER 65532:65532
ENTRYPOINT ["/cooc"]
