#!/usr/bin/env bash
# Build a real Kubernetes API server and its etcd from the Go module proxy, for the tests
# that `helm install` the chart against them (tests/kube/). No kubelet, controller-manager or
# scheduler: objects are stored and validated, no pod ever runs.
#
# Neither builds with `go install ...@version`: both main modules carry `replace` directives
# (k8s.io/kubernetes to ./staging, which its module zip leaves out; etcd's server module to
# ../api etc.). So:
#   kube-apiserver  the k8s.io/kubernetes module's source, its go.mod rewritten to require
#                   the published staging modules (k8s.io/api ... at v0.<minor>.<patch>)
#                   instead of replacing them with ./staging, then `go build ./cmd/kube-apiserver`
#                   with the version stamped in as hack/lib/version.sh does.
#   etcd            a two-file main module requiring go.etcd.io/etcd/server/v3 (its main.go is
#                   `etcdmain.Main(os.Args)`), the etcd version Kubernetes pins for the release.
#
# Idempotent, like scripts/bootstrap.sh: each binary is built once per machine into
# ~/.cache/core-voice/bin/<name>-<version> and hardlinked into the bin dir.
#
# Environment:
#   CORE_VOICE_BIN_DIR   where the binaries go                 (default: <repo>/.bin)
#   CORE_VOICE_CACHE     machine-level cache                   (default: ~/.cache/core-voice)
#   KUBE_APISERVER_BIN, ETCD_BIN
#                        use this binary instead; skips building that tool
#
# `--cached`: build nothing; exit 0 if both binaries are in place or cached, else 1.
set -euo pipefail

# --- pins ------------------------------------------------------------------------------------
KUBERNETES_VERSION=v1.37.2
# build/dependencies.yaml of Kubernetes v1.37.2 ("etcd", version 3.7.0); also its go.mod's.
ETCD_VERSION=v3.7.0

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=${CORE_VOICE_BIN_DIR:-$ROOT/.bin}
CACHE=${CORE_VOICE_CACHE:-$HOME/.cache/core-voice}

SCRIPT=kube_binaries
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

TOOLS=(etcd kube-apiserver)
declare -A VERSION=([etcd]=$ETCD_VERSION [kube-apiserver]=$KUBERNETES_VERSION)
declare -A ENV_VAR=([etcd]=ETCD_BIN [kube-apiserver]=KUBE_APISERVER_BIN)

# module_dir <module@version>: download a module, print its (read-only) source directory.
module_dir() {
	local json dir
	json=$("$GO" mod download -json "$1" || true) # on failure the reason is in the JSON
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
	[[ -d $dir ]] || die "go mod download $1 gave no source dir: $(sed -n 's/^[[:space:]]*"Error": //p' <<<"$json")"
	echo "$dir"
}

build_kube_apiserver() { # <work dir> <out file>
	local work=$1 out=$2 src staging module edits=() ldflags=() key value
	# The staging modules are published as v0.<minor>.<patch> alongside v1.<minor>.<patch>.
	staging=v0.${KUBERNETES_VERSION#v1.}
	src=$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")
	cp -r "$src/." "$work/src"
	chmod -R u+w "$work/src"
	cd "$work/src"
	rm -f go.work go.work.sum # it lists ./staging/src/... too
	while read -r module; do
		edits+=("-dropreplace=$module" "-require=$module@$staging")
	done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' go.mod)
	((${#edits[@]} > 0)) || die "no ./staging replace directives in k8s.io/kubernetes' go.mod"
	"$GO" mod edit "${edits[@]}"
	for key in client-go/pkg/version component-base/version; do
		for value in "gitVersion=$KUBERNETES_VERSION" "gitMajor=1" \
			"gitMinor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")" "gitTreeState=clean" \
			"buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
			ldflags+=("-X 'k8s.io/$key.$value'")
		done
	done
	# -mod=mod: go.sum gains the staging modules' sums (checked against the checksum DB).
	GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
		"$GO" build -trimpath -ldflags "-s -w ${ldflags[*]}" -o "$out" ./cmd/kube-apiserver
}

build_etcd() { # <work dir> <out file>
	local work=$1 out=$2
	mkdir -p "$work/etcd"
	cd "$work/etcd"
	cat >go.mod <<-EOF
		module corevoice.local/etcd

		go 1.26

		require go.etcd.io/etcd/server/v3 $ETCD_VERSION
	EOF
	cat >main.go <<-'EOF'
		// etcd, built from its server module (whose own main.go is exactly this).
		package main

		import (
			"os"

			"go.etcd.io/etcd/server/v3/etcdmain"
		)

		func main() { etcdmain.Main(os.Args) }
	EOF
	GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
		"$GO" build -trimpath -ldflags "-s -w" -o "$out" .
}

# What a build leaves if it fails: removed on exit.
BUILD_LEFTOVERS=()
cleanup() { ((${#BUILD_LEFTOVERS[@]} == 0)) || rm -rf "${BUILD_LEFTOVERS[@]}"; }
trap cleanup EXIT

# build_in_workdir <name> <out>: build_<name> in a fresh work dir under the cache, removed
# afterwards (and by the EXIT trap if the build fails).
build_in_workdir() {
	local work
	work=$(mktemp -d "$CACHE/.build-$1-XXXXXX")
	BUILD_LEFTOVERS=("$work" "$2")
	trap cleanup EXIT # install_tools runs this in a subshell, which has no traps of its own
	("build_${1//-/_}" "$work" "$2") # a subshell: it cds
	rm -rf "$work"
	BUILD_LEFTOVERS=()
}

main() {
	local name
	mkdir -p "$CACHE/bin" "$BIN_DIR"
	# One build at a time touches the cache (CI and a developer may share the machine).
	exec 9>"$CACHE/.kube-binaries.lock"
	flock 9 2>/dev/null || true
	plan_tools
	if [[ ${1:-} == --cached ]]; then # exit 0 when nothing needs building (bootstrap's check)
		for name in "${TOOLS[@]}"; do [[ ${ACTION[$name]} != build ]] || exit 1; done
		exit 0
	fi
	GO=""
	if [[ " ${ACTION[*]} " == *" build "* ]]; then
		GO=$(find_go)
		[[ -n $GO ]] || die "no Go >= 1.26 found: run scripts/bootstrap.sh first (it installs one)"
	fi
	install_tools build_in_workdir
	exec 9>&-
	echo "kube binaries: ready in $(elapsed "$T_START")s"
	for name in "${TOOLS[@]}"; do
		if [[ ${ACTION[$name]} == skip-env ]]; then
			printf '  %-15s %-9s %s\n' "$name" "(from \$${ENV_VAR[$name]})" "${!ENV_VAR[$name]}"
		else
			printf '  %-15s %-9s %s\n' "$name" "${VERSION[$name]}" "$BIN_DIR/$name"
		fi
	done
}

main "$@"
