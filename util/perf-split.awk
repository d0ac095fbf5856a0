# util/perf-split.awk: reads `perf script -F ip,sym,dso` of a `perf record -g`
# profile and prints where the CPU went, in percent of all samples:
#   sys:NAME      kernel time under the system call NAME (the frame just
#                 before do_syscall_64: do_writev, __x64_sys_epoll_wait, ...),
#                 for sends and writes with (tcp) or (unix) when the sample
#                 is in a TCP or a unix-socket send
#   kernel:other  kernel time outside system calls (interrupts, softirq on
#                 return to user space, scheduling)
#   user:SYMBOL   user-space time, by the function sampled (self time;
#                 [unknown](object) when the object has no symbols)
#   obj:OBJECT    all time by object (kernel, nginx, the module, libc, ...)
# Used by util/bench (BENCH_PERF=1); see docs/performance.md.

function flush(   k) {
    if (n == 0) {
        return
    }
    total++
    o = dso[1]
    sub(/^\(/, "", o)
    sub(/\)$/, "", o)
    sub(/.*\//, "", o)
    count["obj:" o]++
    if (dso[1] !~ /kernel/) {
        k = "user:" sym[1]
        if (sym[1] == "[unknown]") {
            k = k "(" o ")"
        }
    } else {
        k = "kernel:other"
        for (i = 2; i <= n; i++) {
            if (sym[i] == "do_syscall_64") {
                k = "sys:" sym[i - 1]
                break
            }
        }
        # the same call for streams and doorbells: say which socket
        if (k ~ /send|write/) {
            for (j = 1; j < i; j++) {
                if (sym[j] ~ /^tcp_sendmsg/) {
                    k = k "(tcp)"
                    break
                }
                if (sym[j] ~ /^unix_/) {
                    k = k "(unix)"
                    break
                }
            }
        }
    }
    count[k]++
    n = 0
}

/^[ \t]*$/ { flush(); next }

{
    n++
    sym[n] = $2
    dso[n] = $NF
}

END {
    flush()
    for (k in count) {
        printf "%6.2f%%  %s\n", 100 * count[k] / total, k
    }
}
