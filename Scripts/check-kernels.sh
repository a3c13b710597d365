#!/usr/bin/env bash
# The neighbour-code kernels (the quantized walk's) of every instruction set
# against the portable C kernels and the estimator in double precision
# (Tests/KernelCheck/neighbour_codes_check.c): the variants this CPU runs
# (AVX2, AVX-512), then NEON, cross-compiled for AArch64 and run under
# qemu-user (both installed from Debian's packages when missing).
#   Scripts/check-kernels.sh           check
#   Scripts/check-kernels.sh --bench   also time this CPU's variants
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
src=Sources/CLodestoneKernels
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
flags=(-std=gnu11 -O2 -Wall -Wextra -Werror -I"$src/include" -I"$src")

cc "${flags[@]}" -o "$out/check" Tests/KernelCheck/neighbour_codes_check.c "$src"/*.c -lm
"$out/check"
if [ "${1:-}" = "--bench" ]; then "$out/check" --bench; fi

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    lodestone_apt_install gcc-aarch64-linux-gnu qemu-user
fi
aarch64-linux-gnu-gcc "${flags[@]}" -static -o "$out/check-arm64" Tests/KernelCheck/neighbour_codes_check.c \
    "$src"/*.c -lm
echo "AArch64 (qemu-aarch64):"
qemu-aarch64 "$out/check-arm64"
