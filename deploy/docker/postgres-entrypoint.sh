#!/bin/bash
# Initialise PGDATA on first start, then become postgres (PID 1, so it gets the stop signal).
# POSTGRES_PASSWORD set: password (scram) authentication for everyone over TCP; unset: trust,
# which only a throwaway test database may use.
set -euo pipefail
: "${PGDATA:?}"
: "${POSTGRES_USER:=postgres}"
if [[ ! -s $PGDATA/PG_VERSION ]]; then
	args=(-D "$PGDATA" -U "$POSTGRES_USER" -E UTF8 --locale C --no-sync)
	if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
		pwfile=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
		args+=(--auth-host=scram-sha-256 --auth-local=trust --pwfile="$pwfile")
	else
		args+=(--auth=trust)
	fi
	initdb "${args[@]}" >/dev/null
	rm -f "${pwfile:-}"
	{
		echo "# Written by postgres-entrypoint.sh: TCP from anywhere the network lets in."
		if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
			echo "host all all all scram-sha-256"
		else
			echo "host all all all trust"
		fi
	} >>"$PGDATA/pg_hba.conf"
	if [[ -n ${POSTGRES_DB:-} && $POSTGRES_DB != postgres ]]; then
		postgres --single -D "$PGDATA" postgres <<<"CREATE DATABASE \"$POSTGRES_DB\";" >/dev/null
	fi
fi
exec postgres -D "$PGDATA" -k /tmp "$@"
