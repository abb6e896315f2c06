#!/usr/bin/env bash
# Builds the statically linked binaries (glibc, crt-static: no libc needed in the image) and
# the `cooc` image from ./Dockerfile, without pulling anything. Prints the image tag.
#   tests/containers/build-image.sh [TAG]      (default: cooc:<version>-<git short hash>)
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-cooc:${version}-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}
# The host's own architecture (x86_64 or aarch64): the image runs where it was built. For a
# registry serving both, build on (or cross-compile for) each and join them with
# `docker buildx imagetools create` or `docker manifest create`.
target="$(uname -m)-unknown-linux-gnu"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bin cooc --bin cooc-serve >&2
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "target/$target/release/cooc" "target/$target/release/cooc-serve" Dockerfile "$ctx/"
docker build --quiet --tag "$tag" "$ctx" >&2
echo "$tag"
