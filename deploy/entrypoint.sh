#!/bin/sh
# The container's entrypoint: `docker run IMAGE worker` runs the Procfile's `worker` line, verbatim,
# the way Heroku runs it (through a shell, so $PORT and other variables expand). The Procfile is the
# one list of processes; nothing here repeats its commands.
#   entrypoint.sh PROCESS          one of the Procfile's names: release, web, worker, scheduler
#   entrypoint.sh lamplighter ...  any CLI verb (e.g. `docker run IMAGE lamplighter config`)
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
procfile=${LAMPLIGHTER_PROCFILE:-$here/../Procfile}
names=$(sed -n 's/^\([A-Za-z0-9_-]*\):.*/\1/p' "$procfile" | tr '\n' ' ')

if [ $# -eq 0 ]; then
  echo "entrypoint: name a process: ${names% } (or: lamplighter VERB ...)" >&2
  exit 2
fi
if [ "$1" = "lamplighter" ]; then
  exec "$@"
fi
case "$1" in
  *[!A-Za-z0-9_-]*) echo "entrypoint: '$1' is not a process name; the Procfile has: ${names% }" >&2; exit 2 ;;
esac
command=$(sed -n "s/^$1:[[:space:]]*//p" "$procfile")
if [ -z "$command" ]; then
  echo "entrypoint: no process '$1' in the Procfile; it has: ${names% }" >&2
  exit 2
fi
if [ $# -gt 1 ]; then
  echo "entrypoint: a Procfile process takes no arguments (got: $*)" >&2
  exit 2
fi
exec sh -c "exec $command"
