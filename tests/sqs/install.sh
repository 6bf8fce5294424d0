#!/usr/bin/env bash
# Installs LocalStack's SQS (localstack-core from PyPI, run on the host: no Docker) into a venv,
# unless the venv there already imports it. Prints the venv's path.
#
#   LOCALSTACK_VENV   the venv (default ~/.cache/replicache-dynamodb/localstack-venv);
#                     tests/e2e/sqs.mjs reads the same variable and default
#
# The tests start it with tests/e2e/sqs.mjs, which keeps LocalStack's service-catalog cache in
# ~/.cache/replicache-dynamodb/localstack-cache (a start takes ~5 s with it, ~12 s without).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv=${LOCALSTACK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/replicache-dynamodb/localstack-venv}
check='import localstack.services.sqs.provider, localstack.runtime.main, service_identity'

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "==> installing LocalStack's SQS (PyPI: localstack-core 4.13.1, pinned by tests/sqs/constraints.txt) into $venv" >&2
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "LocalStack 4.13.1 needs Python 3.10 or later (python3 is $(python3 --version 2>&1))" >&2; exit 1; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$here/constraints.txt" \
    'localstack-core[base-runtime]' service-identity
  "$venv/bin/python" -c "$check"
fi
echo "$venv"
