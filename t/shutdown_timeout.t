#!/usr/bin/perl

# worker_shutdown_timeout holds for streams too: after a reload, an old
# worker whose stream client has stopped reading (so the stream cannot be
# ended politely) is gone once the timeout runs out, not after
# send_timeout; a stream whose client reads is ended at once with a short
# retry and resumes on a new worker without loss.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(workers => 1,
                              main => 'worker_shutdown_timeout 2s;',
                              http => <<'EOF')->start;
    webhook_zone zone=chat:4m history=200;

    server {
        listen 127.0.0.1:%%PORT%% sndbuf=16k;
        send_timeout 60s;

        location = /pub { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : -1;
}

# a client that opens a stream and never reads
my $idle = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
setsockopt $idle, SOL_SOCKET, SO_RCVBUF, 4096;
connect $idle, Socket::pack_sockaddr_in($t->port,
                                        Socket::inet_aton('127.0.0.1'))
    or die "connect: $!";
syswrite $idle, "GET /stream?sessionId=stuck HTTP/1.1\r\nHost: x\r\n\r\n";

my $reader = $t->sse('/stream?sessionId=live');
$reader->wait_events(1, 5) or die "no connected event\n";

ok(wait_until(sub { active() == 2 }, 5), 'two streams open');

# more than the socket buffers hold, less than webhook_stream_buffer
my $big = 'x' x 8000;
$t->publish_ok('/pub', { message => $big, sessionId => 'stuck' }) for 1 .. 10;
my $last = $t->publish_ok('/pub', { message => 'before', sessionId => 'live' });
my ($ev) = $reader->wait_events(1, 5);
is($ev && $ev->{id}, $last, 'the reading stream has its message');

my $t0 = time;
my @old = $t->reload;

ok($reader->is_closed(5), 'the reading stream is ended at once on reload');

ok($t->wait_pids_gone(\@old, 10), 'the old worker exits');
my $took = time - $t0;
cmp_ok($took, '<', 6,
       sprintf('... %.1f s after the reload: worker_shutdown_timeout 2s, '
               . 'not send_timeout 60s, with a stream nobody reads', $took));

my $after = $t->publish_ok('/pub', { message => 'after', sessionId => 'live' });
my $again = $t->sse('/stream?sessionId=live',
                    headers => { 'Last-Event-ID' => $last });
my @ev = $again->wait_events(2, 5);
is($ev[1] && $ev[1]{id}, $after,
   'the reading client resumes on the new worker with nothing lost');

close $idle;

finish();
