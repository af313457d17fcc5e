#!/usr/bin/env bash
# Shell functions the benchmark scripts share (sourced, not run).

# cpu_of PID: the process's user + sys CPU seconds so far, 0 if it is gone.
cpu_of() {
    awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' \
        "/proc/$1/stat" 2>/dev/null || echo 0
}

# thread_cpu: lines of /proc/PID/task/TID/stat on stdin -> "NAME<TAB>CPU-S<TAB>THREADS" per thread
# name (names may hold spaces; trailing digits dropped, so librdkafka's rdk:broker1,
# rdk:broker2 ... count together).
thread_cpu() {
    awk -v t="$(getconf CLK_TCK)" '{
        s = $0; sub(/^[0-9]+ \(/, "", s); name = substr(s, 1, index(s, ")") - 1)
        sub(/[0-9]+$/, "", name); sub(/^.*\) /, "", s); split(s, f, " ")
        cpu[name] += (f[12] + f[13]) / t; n[name]++
    } END { for (k in cpu) printf "%s\t%.2f\t%d\n", k, cpu[k], n[k] }'
}
