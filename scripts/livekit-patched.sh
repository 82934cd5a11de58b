#!/usr/bin/env bash
# Build the pinned livekit-server with a proposed upstream patch applied, to measure it:
#
#   scripts/livekit-patched.sh docs/upstream/livekit-skip-unserved-default-dispatch.patch
#   LIVEKIT_SERVER_BIN=<the path it printed> make bench BENCH=dispatch
#
# Same Go and module sources as `make bootstrap` (run that first); the build is cached in
# the machine cache under the patch's hash, so a second run prints the path at once.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PATCH=$(realpath "${1:?usage: $0 <patch file>}")
CACHE=${CORE_VOICE_CACHE:-$HOME/.cache/core-voice}
VERSION=$(sed -n 's/^LIVEKIT_SERVER_VERSION=//p' "$ROOT/scripts/bootstrap.sh")
GO=""
for go in "$(command -v go || true)" /usr/local/go/bin/go "$CACHE"/go1.*/bin/go; do
	[[ -n $go && -x $go ]] && GO=$go && break
done
[[ -n $GO ]] || { echo "no Go found: run make bootstrap first" >&2; exit 1; }

out="$CACHE/bin/livekit-server-$VERSION-patched-$(sha256sum "$PATCH" | cut -c1-12)"
if [[ ! -x $out ]]; then
	src=$("$GO" mod download -json "github.com/livekit/livekit-server@$VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $src ]] || { echo "go mod download gave no source dir for $VERSION" >&2; exit 1; }
	work=$(mktemp -d "${TMPDIR:-/tmp}/livekit-patched-XXXXXX")
	trap 'rm -rf "$work"' EXIT
	cp -r "$src/." "$work"
	chmod -R u+w "$work"
	(cd "$work" && patch -p1 --quiet <"$PATCH" &&
		GOFLAGS=-buildvcs=false "$GO" build -o "$work/livekit-server" ./cmd/server) >&2
	mkdir -p "$CACHE/bin"
	mv "$work/livekit-server" "$out"
fi
echo "$out"
