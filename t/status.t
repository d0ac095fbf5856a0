#!/usr/bin/perl

# webhook_status: the zone's figures as JSON and in the Prometheus text
# format, exact for what the test did (channels, retained messages,
# streams, published and delivered totals, evictions).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m history=3;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

sub status { $t->request('GET', '/status')->{json} }

my $st = status();
is($st->{zone}, 'chat', 'status: zone name');
is($st->{size}, 1024 * 1024, 'status: zone size');
ok($st->{free} > 0 && $st->{free} <= $st->{size}
   && $st->{used} == $st->{size} - $st->{free}, 'status: used + free = size');
is_deeply([ @$st{qw(channels retained streams published delivered)} ],
          [ 0, 0, 0, 0, 0 ], 'status: an empty zone');
ok(WebhookSSE::Test::wait_until(sub { status()->{workers} == 2 }, 5),
   'status: both workers have joined the zone');

# two streams on s1, one on s2; 5 messages to s1, 1 to s2, 1 broadcast
my @s1 = map { $t->sse('/stream?sessionId=s1') } 1 .. 2;
my $s2 = $t->sse('/stream?sessionId=s2');
$_->wait_events(1, 5) for @s1, $s2;

my @ids = map { $t->publish_ok('/pub', { message => "m$_", sessionId => 's1' }) }
          1 .. 5;
push @ids, $t->publish_ok('/pub', { message => 'x', sessionId => 's2' });
push @ids, $t->publish_ok('/pub', { message => 'all' });

$_->wait_for_event($ids[-1], 5) for @s1, $s2;

$st = status();
is($st->{channels}, 2, 'status: two session channels');
is($st->{retained}, 3 + 1 + 1, 'status: retained within history=3');
is($st->{streams}, 3, 'status: three streams');
is($st->{published}, 7, 'status: seven published');
is($st->{delivered}, 2 * 5 + 1 + 3, 'status: every delivery counted');
is($st->{lastSeq}, 7, 'status: last sequence number');

my $r = $t->request('GET', '/status?format=prometheus');
like($r->{headers}{'content-type'}, qr{^text/plain}, 'prometheus: text');
like($r->{body}, qr/^webhook_streams\{zone="chat"\} 3$/m,
     'prometheus: streams gauge');
like($r->{body}, qr/^webhook_delivered_total\{zone="chat"\} 14$/m,
     'prometheus: delivered counter');
like($r->{body}, qr/^# TYPE webhook_published_total counter$/m,
     'prometheus: typed');

$r = $t->request('POST', '/status');
is($r->{status}, 405, 'status: POST refused');
is($r->{json} && $r->{json}{success}, 0, 'status: refusal is JSON');

$_->close for @s1, $s2;

ok(WebhookSSE::Test::wait_until(sub { status()->{streams} == 0 }, 5),
   'status: streams back to 0');

finish();
