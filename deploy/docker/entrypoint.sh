#!/bin/sh
# The raftq image's entry point. With no arguments, or `serve` alone, it runs node
# $RAFTQ_NODE (default: the container's host name) of $RAFTQ_CONFIG; any other arguments are a
# raftq command line (`docker run --rm IMAGE status --nodes n1:7001`).
set -eu
if [ "$#" -eq 0 ] || [ "$*" = "serve" ]; then
    set -- serve --config "${RAFTQ_CONFIG:?}" --node "${RAFTQ_NODE:-$(hostname)}"
fi
exec raftq "$@"
