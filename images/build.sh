#!/usr/bin/env bash
# Build himalia's container images with the Docker engine at DOCKER_HOST (else the default socket).
#
#   bash images/build.sh                      # on the docker-stacks / JupyterHub bases (production)
#   bash images/build.sh --local-base         # on a Debian base made here (no registry needed)
#   bash images/build.sh --local-base base    # only some of: base hub gpu
#
# It builds the himalia wheel from this checkout, then himalia/base (CPU user image),
# himalia/hub and (not with --local-base, which has no CUDA base) himalia/gpu, tagged
# :<version> and :latest, and prints the tags it made, one per line.
#
# --local-base makes the base with debootstrap (Debian bookworm, python3) and `docker import`,
# and installs every Python package from a wheelhouse collected on this host with pip's own
# settings (index, certificates, local wheel folders): builds need no registry and no index.
# The dependencies go in a layer of their own, so a change to himalia rebuilds only himalia's.
#
# Everything is cached by content under HIMALIA_IMAGE_CACHE (default ~/.cache/himalia/images):
# an image whose inputs (Dockerfiles, wheels, base) are unchanged is not rebuilt, and an engine
# that lacks it (a new data root) loads a saved copy.
set -euo pipefail
cd "$(dirname "$0")/.."

local_base=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --local-base) local_base=1 ;;
    base|hub|gpu) targets+=("$arg") ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "images/build.sh: unknown argument '$arg' (use --local-base and any of: base hub gpu)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(base hub gpu)

cache="${HIMALIA_IMAGE_CACHE:-$HOME/.cache/himalia/images}"
mkdir -p "$cache"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm

die() { echo "images/build.sh: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }
hash_of() { sha256sum | cut -c1-16; }
link() { ln "$1" "$2/" 2>/dev/null || cp "$1" "$2/"; }
docker info >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST:-the default socket}: start dockerd or set DOCKER_HOST"

# -- the himalia wheel, keyed by the content of the tracked sources ------------------------------
src_key=$(git ls-files -z pyproject.toml setup.cfg README.md hub magics kernels extension \
          ':!:extension/node_modules' | sort -z | xargs -0 cat -- 2>/dev/null | hash_of)
wheel_dir="$cache/wheel-$src_key"
if ! ls "$wheel_dir"/himalia-*.whl >/dev/null 2>&1; then
  step "building the himalia wheel"
  rm -rf "$wheel_dir.tmp" && mkdir -p "$wheel_dir.tmp"
  "$python" -m pip wheel -q --no-deps -w "$wheel_dir.tmp" . >&2
  rm -rf "$wheel_dir" && mv "$wheel_dir.tmp" "$wheel_dir"
fi
wheel=$(ls "$wheel_dir"/himalia-*.whl)
version=$(basename "$wheel" | cut -d- -f2)

contexts=$(mktemp -d "${TMPDIR:-/tmp}/himalia-image-context-XXXXXX")
trap 'rm -rf "$contexts"' EXIT

# A build context: the Dockerfiles, and dist/ holding the himalia wheel and the given wheels.
new_context() {
  local dir="$contexts/$1"; shift
  mkdir -p "$dir/dist" "$dir/images"
  cp -r images/base images/hub images/gpu images/debian "$dir/images/"
  link "$wheel" "$dir/dist"
  for f in "$@"; do link "$f" "$dir/dist"; done
  echo "$dir"
}

# The wheels himalia[$1] needs (himalia's own left out), collected once per requirements.
wheelhouse() {
  local extras=$1 key dir
  key=$( { echo "$extras"; cat pyproject.toml; cat /etc/xdg/pip/constraints.txt 2>/dev/null || true; } | hash_of)
  dir="$cache/wheelhouse-$key"
  if [ ! -f "$dir/.complete" ]; then
    step "collecting the wheels of himalia[$extras]"
    mkdir -p "$dir"
    "$python" -m pip wheel -q -w "$dir" "$wheel[$extras]" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
    rm -f "$dir"/himalia-*.whl
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# Build (or load) image himalia/$1 from Dockerfile $2 in context $3 with more build arguments;
# cached by the content of all inputs and tagged himalia/$1:build-<key> (left in $last_built).
# Local bases are named by their own content keys (himalia/rootfs:<key>, :build-<key>), so the
# arguments stand for their content. The local base and dependency layers (images/debian/)
# never install himalia itself, so its wheel is not in their key: a change to himalia rebuilds
# only the images' last layer.
build_image() {
  local name=$1 dockerfile=$2 context=$3; shift 3
  local key own=""
  case "$dockerfile" in images/debian/*) ;; *) own=$(echo "$context/dist/"himalia-*.whl) ;; esac
  key=$( { cat "$context/$dockerfile"; printf '%s\n' "$@"; ls -1 "$context/dist" | grep -v '^himalia-';
           [ -z "$own" ] || cat "$own"; cat "$context"/images/debian/fix-permissions; } | hash_of)
  local cached="himalia/$name:build-$key"
  if ! docker image inspect "$cached" >/dev/null 2>&1; then
    if [ -f "$cache/image-$name-$key.tar" ]; then
      step "loading himalia/$name from the cache"
      docker load -q -i "$cache/image-$name-$key.tar" >/dev/null
    else
      step "building himalia/$name"
      # (The engine's classic builder; its deprecation notice is left out.)
      docker build -q --network host -f "$context/$dockerfile" -t "$cached" "$@" "$context" 2>&1 >/dev/null \
        | { grep -v "DEPRECATED: The legacy builder\|Install the buildx\|docs.docker.com/go/buildx\|^$" || true; } >&2
      docker image inspect "$cached" >/dev/null 2>&1 || die "building himalia/$name failed (see the output above)"
      rm -f "$cache/image-$name-"*.tar
      docker save -o "$cache/image-$name-$key.tar.tmp" "$cached" && mv "$cache/image-$name-$key.tar.tmp" "$cache/image-$name-$key.tar"
    fi
  fi
  last_built=$cached
}

# The Debian root file system, imported as an image named by its content.
rootfs_image() {
  local key tarball root
  # "root 0755": the key of root file systems whose top folder others may enter (mktemp makes
  # it 0700, and an image whose / is 0700 lets no other user run anything); "umask 022": made
  # with Debian's usual modes whatever the caller's umask (the packages' scripts make folders
  # such as /usr/local/bin with mkdir, which a umask of 077 would leave to root alone).
  key=$(printf '%s %s python3 python3-venv root 0755 umask 022\n' "$suite" "$mirror" | cat - /etc/ssl/certs/ca-certificates.crt | hash_of)
  if ! docker image inspect "himalia/rootfs:$key" >/dev/null 2>&1; then
    tarball="$cache/rootfs-$key.tar"
    if [ ! -f "$tarball" ]; then
      command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
      step "making a Debian $suite root file system with debootstrap"
      root=$(mktemp -d "${TMPDIR:-/tmp}/himalia-rootfs-XXXXXX")
      chmod 0755 "$root"
      (umask 022 && debootstrap --variant=minbase --include=python3,python3-venv "$suite" "$root" "$mirror" >/dev/null) \
        || { rm -rf "$root"; die "debootstrap of $suite from $mirror failed"; }
      # The host's certificate bundle, so https from builds (npm) trusts what the host trusts.
      cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
      rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
      tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$root"
    fi
    step "importing the root file system as himalia/rootfs:$key"
    docker import - "himalia/rootfs:$key" < "$tarball" >/dev/null
  fi
  echo "himalia/rootfs:$key"
}

publish() {
  docker tag "$last_built" "himalia/$1:$version"
  docker tag "$last_built" "himalia/$1:latest"
  echo "himalia/$1:$version"
}

[ "$local_base" = 0 ] || rootfs=$(rootfs_image)
for target in "${targets[@]}"; do
  case "$target:$local_base" in
    base:1|hub:1)
      # Base (docker-stacks' shape, or JupyterHub's) -> dependencies -> the image itself.
      extras=$([ "$target" = base ] && echo stack || echo docker,k8s,oauth)
      stage=$([ "$target" = base ] && echo user || echo hub)
      house=$(wheelhouse "$extras")
      context=$(new_context "$target" "$house"/*.whl)
      build_image "local-$target" images/debian/Dockerfile "$context" --target "$stage" --build-arg ROOTFS="$rootfs"
      build_image "local-$target-deps" images/debian/deps.Dockerfile "$context" --build-arg BASE="$last_built" \
        --build-arg OWNER="$([ "$target" = base ] && echo 1000:100 || echo 0:0)"
      build_image "$target" "images/$target/Dockerfile" "$context" --build-arg BASE_IMAGE="$last_built" \
        --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/tmp/wheels
      publish "$target"
      ;;
    gpu:1)
      # No CUDA base here; tests/unit/test_images.py checks its instructions and BASE_IMAGE.
      step "himalia/gpu: not built on the local base (it needs a CUDA base image)"
      ;;
    *)
      build_image "$target" "images/$target/Dockerfile" "$(new_context "$target")"
      publish "$target"
      ;;
  esac
done
