# Sourced by scripts/test: makes Debian's chromium and chromium-driver
# available for the dashboard's browser tests (ajc/tests/dashboard/),
# installing them with apt-get the first time (as root, or through sudo).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo ">> installing chromium and chromium-driver (Debian) for the dashboard tests" >&2
  _sudo=""
  if [ "$(id -u)" != 0 ]; then _sudo="sudo"; fi
  if ! { $_sudo apt-get update -q >&2 &&
    DEBIAN_FRONTEND=noninteractive $_sudo apt-get install -y -q chromium chromium-driver >&2; }; then
    echo "!! could not install chromium and chromium-driver: the dashboard tests will fail" >&2
  fi
fi
