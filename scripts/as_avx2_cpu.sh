#!/usr/bin/env bash
# Run a command as on a CPU without AVX-512 or AMX (the AVX2-only AMD EPYC some sessions get), on any x86 Linux
# host: oneDNN and ATen limited to AVX2 kernels (so bf16 is emulated, as there), and /proc/cpuinfo without the
# avx512*/amx* flags (so the project's "bf16 is native here" check answers as there). Needs root (a private
# mount namespace). Example: sudo scripts/as_avx2_cpu.sh make test
set -euo pipefail
if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
fake="$(mktemp /tmp/cpuinfo-avx2.XXXXXX)"
sed -E 's/ (avx512[a-z0-9_]*|amx[a-z0-9_]*)//g' /proc/cpuinfo >"$fake"
exec unshare --mount --propagation private bash -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$fake" "$@"
