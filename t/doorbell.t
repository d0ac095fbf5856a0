#!/usr/bin/perl

# A doorbell that cannot be rung stalls nothing: with every cross-worker
# doorbell send failing (an LD_PRELOAD shim makes sendto() to the module's
# sockets fail with ENOBUFS), a message published on one worker still
# reaches a stream held by the other, within about a second, every time;
# the failure is logged at info, and once sends work again delivery is
# immediate.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $dir = tempdir(CLEANUP => 1);
my $flag = "$dir/fail-doorbells";

open my $c, '>', "$dir/shim.c" or die "$dir/shim.c: $!";
print $c <<'C';
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

ssize_t
sendto(int fd, const void *buf, size_t len, int flags,
    const struct sockaddr *sa, socklen_t salen)
{
    static ssize_t (*real)(int, const void *, size_t, int,
                           const struct sockaddr *, socklen_t);
    const struct sockaddr_un *un = (const struct sockaddr_un *) sa;
    const char *flag = getenv("WEBHOOK_TEST_FAIL_DOORBELLS");

    if (real == NULL) {
        real = dlsym(RTLD_NEXT, "sendto");
    }

    if (flag && sa && sa->sa_family == AF_UNIX && un->sun_path[0] == '\0'
        && strncmp(un->sun_path + 1, "nginx-webhook-sse/", 18) == 0
        && access(flag, F_OK) == 0)
    {
        errno = ENOBUFS;
        return -1;
    }

    return real(fd, buf, len, flags, sa, salen);
}
C
close $c;

system('cc', '-shared', '-fPIC', '-o', "$dir/shim.so", "$dir/shim.c",
       '-ldl') == 0 or die "cannot build the sendto shim\n";

my $preload = join ' ', grep { $_ } $ENV{TEST_WEBHOOK_SSE_ASAN_PRELOAD},
                                    "$dir/shim.so";

# under AddressSanitizer the harness sets LD_PRELOAD from this one
$ENV{TEST_WEBHOOK_SSE_ASAN_PRELOAD} = $preload
    if $ENV{TEST_WEBHOOK_SSE_ASAN_PRELOAD};

my $t = WebhookSSE::Test->new(workers => 2,
                              env => { WEBHOOK_TEST_FAIL_DOORBELLS => $flag,
                                       LD_PRELOAD => $preload },
                              main => 'env WEBHOOK_TEST_FAIL_DOORBELLS;',
                              http => <<'EOF')->start;
    webhook_zone zone=chat:1m;
    error_log %%PREFIX%%/logs/error.log info;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Worker-Pid $pid always;

        location = /pub { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

my $s = $t->sse('/stream?sessionId=d');
$s->wait_events(1, 5) or die "no connected event\n";
my $stream_pid = $s->{headers}{'x-worker-pid'};
ok($stream_pid, "stream held by worker $stream_pid");

# a publish taken by the other worker: its doorbell is the one that fails
sub publish_elsewhere
{
    my ($n) = @_;
    for (1 .. 200) {
        my $r = $t->publish('/pub', { message => "m$n", sessionId => 'd' });
        die "publish: $r->{status}\n" unless $r->{status} == 200;
        return $r if $r->{headers}{'x-worker-pid'} ne $stream_pid;
        # it landed on the stream's own worker: no doorbell, try again
        $s->wait_events(1, 5);
    }
    die "200 publishes all landed on the stream's worker\n";
}

open my $f, '>', $flag or die "$flag: $!";
close $f;

for my $n (1 .. 3) {
    my $t0 = time;
    publish_elsewhere($n);
    my ($ev) = $s->wait_events(1, 5);
    my $took = time - $t0;
    ok($ev && $ev->{json}{message} eq "m$n" && $took < 3,
       sprintf('doorbells failing: message %d still arrives (%.2f s)',
               $n, $took));
}

ok($t->wait_error_log(qr/doorbell of process $stream_pid failed/, 5),
   'the failed doorbell is logged');

unlink $flag;

my $t0 = time;
publish_elsewhere(4);
my ($ev) = $s->wait_events(1, 5);
ok($ev && $ev->{json}{message} eq 'm4' && time - $t0 < 0.5,
   'doorbells working again: delivery is immediate');

finish();
