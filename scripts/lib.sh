# shellcheck shell=bash
# What scripts/bootstrap.sh, kube_binaries.sh and images.sh share: output with step timings,
# finding a Go toolchain, the pinned-tool plan (built once per machine, cached) and placing
# a cached binary. Sourced, not run: the caller sets SCRIPT (its name, for messages) and
# CACHE first, and for plan_tools BIN_DIR and the TOOLS / VERSION / ENV_VAR tables.

# --- output ----------------------------------------------------------------------------------
now() { date +%s.%N; }
T_START=$(now)
T_STEP=$T_START
say() { printf '==> %s\n' "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$SCRIPT" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$SCRIPT" "$*" >&2
	exit 1
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step_done() { # step_done <label>: print the time taken since the previous step
	printf '    %-16s %6ss\n' "$1" "$(elapsed "$T_STEP")" >&2
	T_STEP=$(now)
}

# --- tools -----------------------------------------------------------------------------------
# find_go: print a `go` new enough for the pinned modules (go 1.26 in their go.mod), if any:
# on PATH, Debian's/the official one in /usr/local/go, or the toolchain bootstrap downloads.
find_go() {
	local go v
	for go in "$(command -v go || true)" /usr/local/go/bin/go "$CACHE"/go1.*/bin/go; do
		[[ -n $go && -x $go ]] || continue
		v=$("$go" env GOVERSION 2>/dev/null) || continue # go1.26.8
		v=${v#go}
		if ((${v%%.*} > 1)) || { v=${v#*.} && ((${v%%.*} >= 26)); }; then
			echo "$go"
			return
		fi
	done
}

declare -A ACTION # per tool: skip-env | present | from-cache | build

# plan_tools: decide, per tool of TOOLS, whether its env var names a binary, the bin dir has
# the pinned version, the machine cache has it, or it must be built.
plan_tools() {
	local name
	for name in "${TOOLS[@]}"; do
		if [[ -n ${!ENV_VAR[$name]:-} ]]; then
			ACTION[$name]=skip-env
		elif [[ -x $BIN_DIR/$name && $(cat "$BIN_DIR/$name.version" 2>/dev/null) == "${VERSION[$name]}" ]]; then
			ACTION[$name]=present
		elif [[ -x $CACHE/bin/$name-${VERSION[$name]} ]]; then
			ACTION[$name]=from-cache
		else
			ACTION[$name]=build
		fi
	done
}

# install_tools <build command>: put every tool of TOOLS in BIN_DIR at its pinned version,
# from the machine cache, building into the cache first what is not there with
# `<build command> <name> <output file>` (run in a subshell: it may cd).
install_tools() {
	local build=$1 name cached
	for name in "${TOOLS[@]}"; do
		cached=$CACHE/bin/$name-${VERSION[$name]}
		case ${ACTION[$name]} in
		skip-env | present) continue ;;
		build)
			say "building $name ${VERSION[$name]} (minutes; cached afterwards in $CACHE/bin)"
			("$build" "$name" "$cached.tmp.$$")
			chmod 0555 "$cached.tmp.$$" # shared by hardlinks: nobody should write in place
			mv -f "$cached.tmp.$$" "$cached"
			;;
		from-cache) say "$name ${VERSION[$name]}: from machine cache" ;;
		esac
		place "$cached" "$BIN_DIR/$name"
		echo "${VERSION[$name]}" >"$BIN_DIR/$name.version"
		step_done "$name"
	done
}

# place <file> <dest>: hardlink (same filesystem) or copy, atomically.
place() {
	local tmp="$2.tmp.$$"
	ln -f "$1" "$tmp" 2>/dev/null || cp "$1" "$tmp"
	mv -f "$tmp" "$2"
}
