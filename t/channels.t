#!/usr/bin/perl

# A worker finds the streams of each event's channel among hundreds of
# channels that come and go: one worker, streams on 400 of 2000 sessions
# (the worker's channel table grows from 64 slots to 1024), two thirds of the
# sessions closed again (their slots freed in between the others'), some
# reopened. Every stream gets the messages of its own session and the
# broadcasts, nothing of another session, each once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $S = 400;

my $t = WebhookSSE::Test->new(workers => 1, http => <<'EOF')->start;
    webhook_zone zone=chat:32m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /status { webhook_status chat; }
        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_heartbeat off;
        }
    }
EOF

my %streams;    # session index -> [streams]

sub open_stream
{
    my ($i) = @_;
    my $s = $t->sse("/stream?sessionId=s$i");
    my ($c) = $s->wait_events(1, 5);
    die "s$i: no connected event\n" unless $c && $c->{json}
        && ($c->{json}{type} // '') eq 'connected';
    push @{ $streams{$i} }, $s;
}

sub wait_streams
{
    my ($n) = @_;
    return wait_until(sub {
        ($t->request('GET', '/status')->{json}{streams} // -1) == $n;
    }, 10);
}

sub count { my $n = 0; $n += @$_ for values %streams; $n }

# a round: a message on every session, then a broadcast; every open
# stream must read exactly its session's message, then the broadcast
sub round
{
    my ($name) = @_;
    my %id;

    $id{$_} = $t->publish_ok('/pub', { message => "$name $_",
                                       sessionId => "s$_" })
        for 0 .. $S - 1;

    my $bc = $t->publish_ok('/pub', { message => "$name all" });

    my $bad = 0;

    for my $i (sort { $a <=> $b } keys %streams) {
        for my $s (@{ $streams{$i} }) {
            my @ev = $s->wait_events(2, 5);
            my @got = map { $_->{json} ? $_->{json}{messageId} // '?' : '?' }
                      @ev;
            next if "@got" eq "$id{$i} $bc";
            diag("$name: a stream of s$i read (@got), not ($id{$i} $bc)")
                if $bad++ < 5;
        }
    }

    is($bad, 0, "$name: " . count() . " streams, each its own session's "
       . "message and the broadcast");

    # nothing more than that arrives before a last broadcast
    my $fence = $t->publish_ok('/pub', { message => "$name fence" });
    my $extra = 0;

    for my $s (map { @$_ } values %streams) {
        my ($ev) = $s->wait_events(1, 5);
        $extra++ unless $ev && $ev->{json}
            && ($ev->{json}{messageId} // '') eq $fence;
    }

    is($extra, 0, "$name: no stream read anything else");
}

# the zone numbers channels as they come: with sessions that have no
# stream here in between, the worker's channels get ids all over the
# range, and some share a slot's neighbourhood
srand(1);

my @order = map { $_->[1] }
            sort { $a->[0] <=> $b->[0] }
            map { [rand, $_] } (map { "s$_" } 0 .. $S - 1),
                               (map { "x$_" } 0 .. 4 * $S - 1);

my @res;

# keepalive_requests: 1000 requests on one connection
for (my $k = 0; $k < @order; $k += 500) {
    my $last = $k + 499 < $#order ? $k + 499 : $#order;
    push @res, $t->publish_pipelined('/pub',
        [ map { { message => 'earlier', sessionId => $_ } }
          @order[$k .. $last] ]);
}

is(scalar(grep { $_->{status} == 200 } @res), scalar(@order),
   scalar(@order) . " channels made in a random order");

for my $i (0 .. $S - 1) {
    open_stream($i);
    open_stream($i) if $i % 2 == 0;
}

ok(wait_streams(count()), count() . " streams on $S sessions open");
round('all open');

# two thirds of the sessions go, and one stream of some others
for my $i (0 .. $S - 1) {
    if ($i % 3) {
        $_->close for @{ delete $streams{$i} };

    } elsif ($i % 2 == 0) {
        (pop @{ $streams{$i} })->close;
    }
}

ok(wait_streams(count()), count() . " streams left open");
round('after closing');

# some come back, into the freed slots
for my $i (grep { $_ % 3 == 1 } 0 .. $S - 1) {
    open_stream($i);
}

ok(wait_streams(count()), count() . " streams after reopening");
round('after reopening');

$_->close for map { @$_ } values %streams;

ok(wait_streams(0), 'every stream closed');

$t->check_error_log;

finish();
