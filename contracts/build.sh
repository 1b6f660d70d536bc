#!/usr/bin/env bash
# build.sh: builds every contract and test program in contracts/ into ELF files with clang.
#
# Usage: contracts/build.sh [OUT_DIR]   (default: contracts/build)
#   contracts/*.c        -> OUT_DIR/<name>.elf        (example contracts)
#   contracts/tests/*.c  -> OUT_DIR/tests/<name>.elf  (test contracts)
#   contracts/tests/qemu/*.c -> OUT_DIR/tests/qemu/<name>.elf (pure programs: write/exit only)
# Each is one C file linked with the SDK (sdk/bpu_rt.c). A file is rebuilt only when it or the
# SDK is newer than its ELF, so running it again is cheap.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/build}"
CC="${CC:-clang}"

command -v "$CC" >/dev/null || { echo "build.sh: $CC not found (install clang: ci/setup.sh)" >&2; exit 1; }
command -v ld.lld >/dev/null || { echo "build.sh: ld.lld not found (install lld: ci/setup.sh)" >&2; exit 1; }

flags=(--target=riscv32-unknown-elf -march=rv32im -mabi=ilp32 -O2 -ffreestanding -nostdlib
       -static -fuse-ld=lld -mno-relax -Wall -Wextra -Werror -std=c11 -I "$here/sdk")
sdk=("$here/sdk/bpu_rt.c")

build() { # build SRC DEST
    local src="$1" dest="$2"
    if [[ -f "$dest" && "$dest" -nt "$src" && "$dest" -nt "$here/sdk/bpu.h" \
          && "$dest" -nt "$here/sdk/bpu_rt.c" && "$dest" -nt "$here/build.sh" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    "$CC" "${flags[@]}" -o "$dest.tmp" "$src" "${sdk[@]}"
    mv "$dest.tmp" "$dest"
}

shopt -s nullglob
for src in "$here"/*.c; do build "$src" "$out/$(basename "$src" .c).elf"; done
for src in "$here"/tests/*.c; do build "$src" "$out/tests/$(basename "$src" .c).elf"; done
for src in "$here"/tests/qemu/*.c; do build "$src" "$out/tests/qemu/$(basename "$src" .c).elf"; done
