#!/bin/sh
# The GEMM's share of the f32 FMA peak on 1 thread, measured so that other processes' load changes
# it as little as possible: flops per user-space cycle (`perf stat -e cycles:u`) of `sgemm` at each
# size over those of the AVX2 FMA chains; where the cycle counter is not available (a VM without a
# virtual PMU, as the KVM guests these benchmarks ran on), flops per second of the thread's own CPU
# time instead. Each figure is the best of ROUNDS runs of SECONDS, alternating peak and products.
#
#   cargo build --release --example peak
#   scripts/gemm_per_cycle.sh [SECONDS] [ROUNDS] [MxKxN ...]   # default 2 s, 3 rounds, the 3 sizes of `peak`
set -eu
bin=${PEAK_BIN:-target/release/examples/peak}
secs=${1:-2}
rounds=${2:-3}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
shapes=${*:-256x784x512 256x512x512 1024x1024x1024}

# The rate of `$bin "$@"`: flops per cycle, or GFLOP/s of thread CPU time (the last number printed).
rate() {
    out=$(perf stat -x, -e cycles:u -o /dev/stderr "$bin" "$@" 2>&1 || true)
    cycles=$(printf '%s\n' "$out" | awk -F, '/cycles/ && $1 ~ /^[0-9]+$/ { print $1; exit }')
    if [ -n "$cycles" ]; then
        flops=$(printf '%s\n' "$out" | sed -n 's/.* flops \([0-9]*\).*/\1/p' | head -n1)
        awk -v f="$flops" -v c="$cycles" 'BEGIN { printf "%.3f", f / c }'
    else
        printf '%s\n' "$out" | sed -n 's/.*(thread CPU time) \([0-9.]*\).*/\1/p; s/.*(wall \/ CPU time) [0-9.]* \/ \([0-9.]*\).*/\1/p' | head -n1
    fi
}

best() { tr ' ' '\n' | sort -g | tail -n1; }

peaks=""
for s in $shapes; do eval "got_$(echo "$s" | tr x _)=''"; done
i=0
while [ "$i" -lt "$rounds" ]; do
    peaks="$peaks $(rate fma avx2 "$secs")"
    for s in $shapes; do
        v=got_$(echo "$s" | tr x _)
        # shellcheck disable=SC2046
        eval "$v=\"\$$v $(rate sgemm $(echo "$s" | tr x ' ') "$secs" 1)\""
    done
    i=$((i + 1))
done
unit="GFLOP/s of thread CPU time"
perf stat -e cycles:u true 2>&1 | grep -q "not supported" || unit="flops per cycle"
peak=$(echo $peaks | best)
echo "FMA peak, AVX2, 1 thread: $peak $unit (best of:$peaks)"
for s in $shapes; do
    v=got_$(echo "$s" | tr x _)
    eval "all=\$$v"
    got=$(echo $all | best)
    awk -v s="$s" -v g="$got" -v p="$peak" -v a="$all" -v u="$unit" \
        'BEGIN { printf "sgemm %s, 1 thread: %s %s, %.1f%% of peak (best of:%s)\n", s, g, u, 100 * g / p, a }'
done
