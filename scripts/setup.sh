#!/usr/bin/env bash
# One-step environment setup for recsys-pipeline, shared by `make setup` and kubeflow/Dockerfile.
#
#   1. C++/C runtime: ml-metadata 1.21 (required by TFX 1.21) ships only manylinux_2_39 wheels
#      built with GCC 13, so it needs GLIBCXX_3.4.32 and glibc >= 2.39. Debian 12 has neither;
#      on Debian 12 we install libstdc++6 (and, through its dependency, libc6) from Debian 13
#      with the Debian 13 source pinned at priority 100, so nothing else is upgraded.
#   2. uv: taken from PATH, else installed from PyPI into .tools/ (never a curl | sh installer).
#   3. .venv: created from uv.lock with `uv sync --locked` (fails if the lock is stale), and
#      compiled to bytecode: uv does not write .pyc files by default, and a process that
#      cannot write them (PYTHONDONTWRITEBYTECODE, a read-only image) compiles TensorFlow's
#      sources at every start, 33 s instead of 8 s for each pipeline step or `recsys` command.
#
# Idempotent: on a machine that is already set up it only checks, which takes seconds.
# Options: --system-only (step 1 only, used by the Dockerfile before copying the project);
#          --no-dev (the Kubeflow image: the project and its runtime dependencies, without the
#          dev group's test and lint tools);
#          --test-tools (`make test` only: also Debian's Chromium, for the run report's browser
#          test; not in the image).
set -euo pipefail

UV_VERSION="0.13.9"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SYSTEM_ONLY=0
TEST_TOOLS=0
NO_DEV=0
RUNTIME_REPAIRED=0
[[ "${1:-}" == "--system-only" ]] && SYSTEM_ONLY=1
[[ "${1:-}" == "--test-tools" ]] && TEST_TOOLS=1
[[ "${1:-}" == "--no-dev" ]] && NO_DEV=1

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

libstdcxx_path() {
  # The libstdc++ the dynamic loader will actually pick.
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}'
}

runtime_ok() {
  local lib glibc
  lib="$(libstdcxx_path)"
  [[ -n "$lib" ]] && grep -aq 'GLIBCXX_3\.4\.32' "$lib" || return 1
  glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
  # glibc >= 2.39, as the manylinux_2_39 wheel tag requires.
  [[ "$(printf '%s\n2.39\n' "$glibc" | sort -V | head -n1)" == "2.39" ]]
}

ensure_runtime() {
  [[ "$(uname -s)-$(uname -m)" == "Linux-x86_64" ]] \
    || die "Linux x86-64 is required (TFX 1.21 / ml-metadata wheels); this is $(uname -s)-$(uname -m)."
  if runtime_ok; then
    log "C++ runtime OK (GLIBCXX_3.4.32, glibc $(getconf GNU_LIBC_VERSION | awk '{print $2}'))."
    return
  fi
  local id="" version_id=""
  if [[ -r /etc/os-release ]]; then
    id="$(. /etc/os-release && echo "${ID:-}")"
    version_id="$(. /etc/os-release && echo "${VERSION_ID:-}")"
  fi
  if [[ "$id" != "debian" || "$version_id" != "12" ]]; then
    die "this machine's C++ runtime lacks GLIBCXX_3.4.32 / glibc 2.39, which ml-metadata 1.21 needs.
       Automatic repair is only done on Debian 12 (found: ${id:-unknown} ${version_id:-?}).
       Use Debian 13 or Ubuntu 24.04 (or newer), which need nothing."
  fi
  [[ "$(id -u)" == "0" ]] \
    || die "Debian 12 needs libstdc++6 (GCC 13+) and libc6 2.39+ from Debian 13, installed with apt as root.
       Re-run as root: sudo make setup"
  log "Debian 12 without GLIBCXX_3.4.32: installing libstdc++6 from Debian 13 (trixie, pinned at priority 100)."
  cat > /etc/apt/sources.list.d/recsys-trixie.sources <<'SRC'
# Added by recsys-pipeline scripts/setup.sh: Debian 13 source for libstdc++6 (GLIBCXX_3.4.32).
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/recsys-trixie <<'PIN'
# Added by recsys-pipeline scripts/setup.sh: never upgrade from trixie unless asked with -t trixie.
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -q -t trixie libstdc++6 >&2 || die "apt-get install -t trixie libstdc++6 failed"
  runtime_ok || die "libstdc++6 from trixie was installed but GLIBCXX_3.4.32 / glibc 2.39 is still missing."
  RUNTIME_REPAIRED=1
  log "C++ runtime repaired (glibc $(getconf GNU_LIBC_VERSION | awk '{print $2}'))."
}

find_python() {
  # The venv interpreter: first of python3.13/3.12/3.11/python3 within the supported range.
  local py
  for py in "${RECSYS_PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [[ -n "$py" ]] || continue
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      # The real executable, not a shim (pyenv): uv recreates .venv when the path differs.
      "$py" -c 'import sys; print(sys.executable)'; return
    fi
  done
  die "no Python 3.11-3.13 found on PATH (set RECSYS_PYTHON=/path/to/python3.x)."
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
    return
  fi
  UV="$REPO_DIR/.tools/uv/bin/uv"
  if [[ -x "$UV" ]]; then return; fi
  local py; py="$(find_python)"
  log "uv not found: installing uv==$UV_VERSION from PyPI into .tools/uv"
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
      log "$py has no pip: installing Debian's python3-pip (only to fetch uv)"
      apt-get update -q >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip >&2
    else
      die "$py has no pip; install pip (Debian/Ubuntu: apt-get install python3-pip) or uv, then re-run."
    fi
  fi
  # --target keeps it out of the (possibly externally managed) system site-packages.
  "$py" -m pip install --quiet --disable-pip-version-check --target "$REPO_DIR/.tools/uv" "uv==$UV_VERSION" >&2
  [[ -x "$UV" ]] || die "uv install into .tools/uv failed"
}

ensure_venv() {
  local py; py="$(find_python)"
  if [[ "$RUNTIME_REPAIRED" == "1" ]]; then
    # uv caches each interpreter's platform (glibc version); after the libc upgrade that entry
    # would still say manylinux_2_36 and uv would refuse the manylinux_2_39 wheels.
    rm -rf "$("$UV" cache dir)"/interpreter-v*
  fi
  local groups=()
  [[ "$NO_DEV" == "1" ]] && groups=(--no-dev)
  log "Syncing .venv from uv.lock with $py ($("$py" -V 2>&1)) ${groups[*]:-}"
  cd "$REPO_DIR"
  # System certificates: behind a TLS-inspecting proxy only the system store has its CA.
  UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}" UV_PYTHON_DOWNLOADS=never \
    "$UV" sync --locked --compile-bytecode --python "$py" "${groups[@]}" >&2 \
    || die "uv sync failed. If you changed dependencies, run 'uv lock' and commit uv.lock."
}

ensure_chromium() {
  # The run report is checked in headless Chromium (render, screenshot, no console errors).
  if command -v chromium >/dev/null 2>&1; then return; fi
  [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1 \
    || die "the tests need Chromium (headless) for the run report: install Debian/Ubuntu's
       'chromium' package (sudo apt-get install chromium), then re-run."
  log "Installing Chromium (Debian's package) for the report's browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -q --no-install-recommends chromium >&2 \
    || die "apt-get install chromium failed"
}

ensure_runtime
if [[ "$SYSTEM_ONLY" == "1" ]]; then exit 0; fi
ensure_uv
ensure_venv
if [[ "$TEST_TOOLS" == "1" ]]; then ensure_chromium; fi
log "Ready: $REPO_DIR/.venv"
