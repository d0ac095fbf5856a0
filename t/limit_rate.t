#!/usr/bin/perl

# limit_rate on a stream location: output is paced, not stalled: the
# pause limit_rate asks for is not replaced by send_timeout, so 200 KB at
# 50 KB/s arrive in about three seconds, neither at once nor after
# send_timeout.  Such a
# stream keeps its request (nginx paces it), and still ends on reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m history=200;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub { webhook_publish chat; }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            limit_rate 50k;
            send_timeout 20s;
        }
    }
EOF

my $s = $t->sse('/stream?sessionId=r');
$s->wait_events(1, 5) or die "no connected event\n";

my $body = 'y' x 10000;
my $t0 = time;
$t->publish_ok('/pub', { message => $body, sessionId => 'r', n => $_ })
    for 1 .. 20;

my @ev = $s->wait_events(20, 15);
my $took = time - $t0;

is(scalar @ev, 20, '20 messages of 10 KB arrive at 50 KB/s');
ok($took > 1.5 && $took < 10,
   sprintf('... in %.1f s: paced by limit_rate, not held for '
           . 'send_timeout (20 s)', $took));
is_deeply([ map { $_->{json}{n} } @ev ], [ 1 .. 20 ], '... in order');

finish();
