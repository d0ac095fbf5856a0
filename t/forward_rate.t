#!/usr/bin/perl

# webhook_forward_rate and webhook_forward_concurrency hold per endpoint
# across all workers.  100 sessions x 20 messages to a rate-limited
# endpoint: every message arrives, each once (every answer is a success),
# and the receiver, which measures both, never sees the rate or the
# concurrency exceeded.  Then a slow receiver: the concurrency is reached
# and never exceeded.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $RATE = 150;

my $t = WebhookSSE::Test->new(http => '', workers => 2);
my $fast = WebhookSSE::Receiver->start(node => $t->dir, delay_ms => 10);
my $slow = WebhookSSE::Receiver->start(node => $t->dir, delay_ms => 100);
my ($fp, $sp) = ($fast->port, $slow->port);

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /limited {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$fp/in;
            webhook_forward_rate ${RATE}r/s;
            webhook_forward_concurrency 10;
        }

        location = /slow {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$sp/in;
            webhook_forward_rate off;
            webhook_forward_concurrency 4;
        }

        location = /status { webhook_status chat; }
    }
CONF
$t->start;

# 100 sessions x 20 messages, interleaved

my (%published, %by_session);
for my $n (1 .. 20) {
    for my $s (1 .. 100) {
        my $id = $t->publish_ok('/limited', { message => "m$n",
                                              sessionId => "s$s" });
        $published{$id} = 1;
        push @{ $by_session{"s$s"} }, $id;
    }
}
is(scalar keys %published, 2000, '2000 messages published');

my @got = $fast->wait_requests(sub { @_ >= 2000 }, 60);
is(scalar @got, 2000, 'the receiver got 2000 requests');

my %seen;
$seen{ $_->{id} }++ for @got;
is(scalar(grep { !$seen{$_} } keys %published), 0, 'every message arrived');
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0,
   'none twice (every answer was a success)');

my $max_inflight = 0;
$max_inflight = $_->{inflight} > $max_inflight ? $_->{inflight}
                                               : $max_inflight for @got;
cmp_ok($max_inflight, '<=', 10,
       "concurrency never above 10 (at most $max_inflight seen)");

# the rate, as the receiver saw it: in any 4 s window at most 4 s worth,
# plus 10% for arrival jitter on a busy machine (a receiver stalled for
# 0.4 s gets that much at once); without the limit the endpoint would
# take 500 a second (10 at once, 10 ms each)

my @times = sort { $a <=> $b } map { $_->{t} } @got;
my ($max, $j) = (0, 0);
for my $i (0 .. $#times) {
    $j++ while $j < @times && $times[$j] < $times[$i] + 4;
    $max = $j - $i if $j - $i > $max;
}
cmp_ok($max, '<=', 4 * $RATE * 1.1 + 2,
       "rate never above ${RATE}r/s ($max in the busiest 4 s)");
my $span = $times[-1] - $times[0];
cmp_ok($span, '>=', 1999 / $RATE * 0.9,
       sprintf('2000 deliveries took %.1f s at %dr/s', $span, $RATE));

# (the receiver has the last request before the worker has its answer
# and counts it: wait, bounded, for the count, as in t/conf_forward.t)
my ($st, $ep);
wait_until(sub {
    $st = $t->request('GET', '/status')->{json};
    ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$fp" }
            @{ $st->{outbound} // [] };
    ($ep->{delivered} // 0) >= 2000;
}, 10);
is($ep->{delivered}, 2000, 'status: 2000 delivered');
is($ep->{retried} + $ep->{failed} + $ep->{dead}, 0,
   'none retried, failed or dead');

# a slow receiver: the concurrency is reached, never exceeded

$t->publish_ok('/slow', { message => "x$_" }) for 1 .. 60;
my @slow = $slow->wait_requests(sub { @_ >= 60 }, 30);
is(scalar @slow, 60, 'the slow receiver got the 60 messages');
my $peak = 0;
$peak = $_->{inflight} > $peak ? $_->{inflight} : $peak for @slow;
is($peak, 4, 'at most 4 in flight, and 4 reached');

finish();
