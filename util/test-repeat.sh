#!/usr/bin/env bash
# make test-repeat: runs the t/ suite (or the tests given as arguments) N
# times in a row, to find tests that fail by chance, and prints a summary:
# runs, green runs, and for every test file that failed, in which runs and
# which of its checks.
#
#     util/test-repeat.sh [TEST..]           N=20 by default
#
# Environment:
#     N=20        number of runs
#     HOG=half    a CPU hog on every core during a run (stress-ng --cpu
#                 <cores>): half (the even runs), all, none
#     ASAN=0      1: each run is util/test-asan.sh (the module built with
#                 AddressSanitizer, slower, other timings)
#     STOP=0      1: stop at the first failing run
#     REPEAT_DIR  where the logs go (default build/test-repeat/<time>):
#                 run-NN.log per run, the kept server directories of failed
#                 tests (t/servroot-*) under run-NN/, summary.txt
#
# Exits 1 when any run failed.  The hog runs at normal priority, as the
# other load of a busy machine does; it is stopped by its pid after each run.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

n=${N:-20}
hog=${HOG:-half}
asan=${ASAN:-0}
stop=${STOP:-0}
cores=$(nproc)
dir=${REPEAT_DIR:-$repo/build/test-repeat/$(date -u +%Y%m%d-%H%M%S)}

case $n in ''|*[!0-9]*) echo "test-repeat: N=$n is not a number" >&2
                        exit 2 ;;
esac
case $hog in half|all|none) ;;
    *) echo "test-repeat: HOG=$hog: half, all or none" >&2; exit 2 ;;
esac
if [ "$hog" != none ] && ! command -v stress-ng > /dev/null; then
    echo "test-repeat: stress-ng missing (make test-repeat installs it)" >&2
    exit 2
fi

mkdir -p "$dir"
tests=("$@")

hog_pid=
run_pid=
stop_hog()
{
    if [ -n "$hog_pid" ]; then
        kill -TERM "$hog_pid" 2> /dev/null
        wait "$hog_pid" 2> /dev/null
        hog_pid=
    fi
}
# an nginx left by a test that ended while starting it: its master (pid
# file in a t/servroot-* of this checkout, started with that prefix)
stop_left_nginx()
{
    local f pid
    for f in "$repo"/t/servroot-*/logs/nginx.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2> /dev/null) || continue
        case $pid in ''|*[!0-9]*) continue ;; esac
        if tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null \
           | grep -qF "${f%/logs/nginx.pid}/"
        then
            kill -TERM "$pid" 2> /dev/null
        fi
    done
}

# interrupted: the run's process group (prove, the tests, which stop their
# nginx on TERM) and the hog
stop_all()
{
    if [ -n "$run_pid" ]; then
        kill -TERM -- "-$run_pid" 2> /dev/null
        wait "$run_pid" 2> /dev/null
        run_pid=
        sleep 2
        stop_left_nginx
    fi
    stop_hog
}
trap 'stop_all; exit 130' INT TERM
trap stop_hog EXIT

# the kept server directories of tests that are no longer running
# (t/servroot-<test pid>-<n>) go next to the run's log
keep_servroots()
{
    local run_dir=$1 d pid
    for d in t/servroot-*; do
        [ -d "$d" ] || continue
        pid=${d#t/servroot-}
        pid=${pid%%-*}
        kill -0 "$pid" 2> /dev/null && continue
        mkdir -p "$run_dir"
        mv "$d" "$run_dir/"
    done
}

echo "test-repeat: $n runs, hog $hog ($cores cores), asan $asan," \
     "logs in $dir"

failed_runs=0
total=0
start_all=$(date +%s)

for i in $(seq 1 "$n"); do
    tag=$(printf 'run-%02d' "$i")
    log=$dir/$tag.log
    hogged=0
    if [ "$hog" = all ] || { [ "$hog" = half ] && [ $((i % 2)) = 0 ]; }
    then
        hogged=1
        stress-ng --cpu "$cores" --timeout 3h --quiet > /dev/null 2>&1 &
        hog_pid=$!
    fi

    start=$(date +%s)
    echo "# $tag of $n, hog $hogged, asan $asan, $(date -u)," \
         "load $(cut -d' ' -f1-3 /proc/loadavg)" > "$log"
    if [ "$asan" = 1 ]; then
        set -- util/test-asan.sh "${tests[@]}"
    elif [ ${#tests[@]} -gt 0 ]; then
        set -- prove --timer "${tests[@]}"
    else
        set -- prove --timer -r t
    fi
    # in a process group of its own, waited for in the background: a
    # signal to this script ends the run at once (stop_all)
    setsid "$@" >> "$log" 2>&1 < /dev/null &
    run_pid=$!
    wait "$run_pid"
    rc=$?
    run_pid=
    secs=$(( $(date +%s) - start ))
    stop_hog
    keep_servroots "$dir/$tag"

    total=$((total + 1))
    echo "# rc $rc, $secs s" >> "$log"
    printf '%s hog=%s rc=%s %4s s' "$tag" "$hogged" "$rc" "$secs" \
        | tee -a "$dir/runs.txt"
    if [ "$rc" != 0 ]; then
        failed_runs=$((failed_runs + 1))
        files=$(grep -oE '^t/[^ ]+\.t +\(Wstat' "$log" | cut -d' ' -f1 \
                | tr '\n' ' ')
        printf ' FAIL %s' "${files:-(see log)}" | tee -a "$dir/runs.txt"
        [ "$stop" = 1 ] && { echo | tee -a "$dir/runs.txt"; break; }
    fi
    echo | tee -a "$dir/runs.txt"
done

# summary: per failing test file, the runs and the failed checks
{
    echo
    echo "test-repeat summary: $total runs ($(( $(date +%s) - start_all )) s)," \
         "$((total - failed_runs)) green, $failed_runs failed;" \
         "hog $hog, asan $asan; logs in $dir"
    perl -e '
        my (%runs, %checks);
        for my $log (@ARGV) {
            my ($run) = $log =~ /(run-\d+)\.log$/;
            open my $fh, "<", $log or next;
            my ($head, @lines) = <$fh>;
            my $h = $head =~ /hog 1/ ? " (hog)" : "";
            my $name;
            for (@lines) {
                if (/^(t\/\S+\.t)\s+\(Wstat/) {
                    $runs{$1}{"$run$h"} = 1;
                }
                if (/^#\s+Failed test \x27(.*)\x27$/) {
                    $name = $1;
                } elsif (/^#\s+Failed test at (t\/\S+\.t) line (\d+)/) {
                    $checks{$1}{"line $2"}++;
                } elsif (defined $name && /^#\s+at (t\/\S+\.t) line (\d+)/) {
                    $checks{$1}{"$name (line $2)"}++;
                    undef $name;
                }
            }
        }
        if (!%runs) { print "no test file failed\n"; exit 0 }
        for my $f (sort { keys %{$runs{$b}} <=> keys %{$runs{$a}} || $a cmp $b }
                   keys %runs)
        {
            my @r = sort keys %{ $runs{$f} };
            printf "%-28s failed in %d run(s): %s\n", $f, scalar @r,
                   join(", ", @r);
            for my $c (sort keys %{ $checks{$f} // {} }) {
                printf "    %dx %s\n", $checks{$f}{$c}, $c;
            }
        }
    ' "$dir"/run-*.log
} | tee "$dir/summary.txt"

[ "$failed_runs" = 0 ]
