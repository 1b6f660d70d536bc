#!/usr/bin/env bash
# Installs what building and testing bpu needs on a Debian machine; safe to run again (idempotent).
set -euo pipefail

# Debian packages: the RTL toolchain (Verilator, Yosys), a C++ compiler for the Verilated model,
# clang/lld and qemu-user for RISC-V contracts, OpenSSL for interoperability tests; for the
# gateway's tests: a PostgreSQL server (ci/services.sh starts a throwaway one), headless Chromium
# with its ChromeDriver, and Debian's python3 with venv (its `-m venv` needs python3-venv).
PKGS=(verilator yosys g++ make clang lld qemu-user openssl coreutils ca-certificates curl jq
      postgresql chromium chromium-driver python3 python3-venv)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Where services start on install (systemd, no policy-rc.d), the postgresql package starts its
  # "main" cluster: the tests start their own server (ci/services.sh), so stop that one again.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name _ status _; do
      if [ "$status" = online ]; then as_root pg_ctlcluster "$ver" "$name" stop || true; fi
    done
  fi
fi

# Python tools for the gateway's tests (schemathesis, paho-mqtt), in a virtualenv under target/
# (git-ignored) made with Debian's python3, not whichever python3 is first on PATH. pip runs only
# when a package is missing or of another major version, so a rerun is fast.
BPU_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/py"
BPU_PY_REQS=("schemathesis>=4,<5" "paho-mqtt>=2,<3")
if ! "$BPU_VENV/bin/python" -c '' 2>/dev/null; then
  echo "setup: creating the Python virtualenv $BPU_VENV"
  mkdir -p "$(dirname "$BPU_VENV")"
  /usr/bin/python3 -m venv --clear "$BPU_VENV"
fi
py_check='
import re, sys
from importlib.metadata import version
for req in sys.argv[1:]:
    name, low, high = re.fullmatch(r"([\w.-]+)>=(\d+),<(\d+)", req).groups()
    if not int(low) <= int(version(name).split(".")[0]) < int(high):
        sys.exit(1)
'
if ! "$BPU_VENV/bin/python" -c "$py_check" "${BPU_PY_REQS[@]}" 2>/dev/null; then
  echo "setup: installing ${BPU_PY_REQS[*]} into $BPU_VENV"
  "$BPU_VENV/bin/python" -m pip install -q --disable-pip-version-check "${BPU_PY_REQS[@]}"
fi

# Rust: the toolchain from rustup (Debian's rustc is too old for this workspace).
if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

echo "setup: verilator $(verilator --version | awk '{print $2}'), yosys $(yosys -V | awk '{print $2}'), $(cargo --version)"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
echo "setup: postgresql $("$pg_bin/postgres" --version | awk '{print $3}'), $(/usr/bin/chromium --version 2>/dev/null | awk '{print $1, $2}'), $(/usr/bin/chromedriver --version | awk '{print $1, $2}'), $("$BPU_VENV/bin/python" -c 'from importlib.metadata import version as v; print("schemathesis", v("schemathesis") + ", paho-mqtt", v("paho-mqtt"))') in $BPU_VENV"
