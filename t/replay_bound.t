#!/usr/bin/perl

# A replay is bounded like live output: a stream resuming from an unknown
# id ("?lastEventId=x") on a full zone gets everything retained, but the
# worker reads it from the zone in parts as the client takes them, and
# the streams of a worker share the events they replay.  A thousand
# clients that ask for it and never read hold little worker memory, not a
# thousand copies of the zone; one client that reads gets all of it, in
# order, exactly once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Test::More;
use WebhookSSE::Test;

my $STREAMS = $ENV{TEST_WEBHOOK_SSE_ASAN_DIR} ? 300 : 1000;
my $SIZE = 16 * 1024;
my $COUNT = 800;                   # 12.8 MB of a 16m zone

my $t = WebhookSSE::Test->new(workers => 1, http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=2000;

    server {
        listen 127.0.0.1:%%PORT%% backlog=2048 sndbuf=16k;
        access_log off;
        client_max_body_size 1m;

        location = /pub { webhook_publish chat; }
        location = /stream { webhook_stream chat; }
        location = /status { webhook_status chat; }
    }
EOF

my $body = 'r' x $SIZE;
my @res = $t->publish_pipelined('/pub',
    [ map { { message => $body, sessionId => 's', n => $_ } } 1 .. $COUNT ],
    timeout => 60);
is(scalar(grep { $_->{status} == 200 } @res), $COUNT,
   "$COUNT messages of 16k stored for one session (12.8 MB)");

my ($pid) = $t->worker_pids;

sub anon_kb
{
    open my $fh, '<', "/proc/$pid/smaps_rollup" or return 0;
    while (<$fh>) {
        return $1 if /^Anonymous:\s+(\d+) kB/;
    }
    return 0;
}

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : -1;
}

my $before = anon_kb();

# clients that ask for the whole history and never read a byte
my @idle;
for (1 .. $STREAMS) {
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
    setsockopt $s, SOL_SOCKET, SO_RCVBUF, 4096;
    connect $s, Socket::pack_sockaddr_in($t->port,
                                         Socket::inet_aton('127.0.0.1'))
        or die "connect: $!";
    syswrite $s, "GET /stream?sessionId=s&lastEventId=x HTTP/1.1\r\n"
                 . "Host: localhost\r\n\r\n";
    push @idle, $s;
}

ok(WebhookSSE::Test::wait_until(sub { active() == $STREAMS }, 60),
   "$STREAMS resuming streams open, none of them reading");

my $grown = anon_kb() - $before;
my $bound = 64 * 1024;             # kB

cmp_ok($grown, '<', $bound,
       "worker memory grew by $grown kB for $STREAMS non-reading streams "
       . 'resuming from an unknown id (bound 64 MB; a copy each would be '
       . int($STREAMS * 12.8) . ' MB)');

# one that reads gets the whole history, in order, exactly once
my $reader = $t->sse('/stream?sessionId=s&lastEventId=x');
my @ev = $reader->wait_events($COUNT + 1, 60);
my @n = map { $_->{json}{n} }
        grep { ($_->{json}{type} // '') eq 'webhook_message' } @ev;
is_deeply(\@n, [ 1 .. $COUNT ],
          'a reading client resuming from an unknown id gets every retained '
          . 'message in order, once, while the others hold theirs');

close $_ for @idle;

ok(WebhookSSE::Test::wait_until(sub { active() == 1 }, 30),
   'the non-reading streams are gone once their clients are');

finish();
