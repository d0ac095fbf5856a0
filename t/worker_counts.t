#!/usr/bin/perl

# Delivery holds with 1, 2 and 4 worker processes: targeted and broadcast
# messages reach exactly the streams they should, in publish order, and
# activeConnections matches the open streams.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

for my $workers (1, 2, 4) {
    my $t = WebhookSSE::Test->new(workers => $workers, http => <<'EOF');
    webhook_zone zone=chat:1m history=100;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF
    $t->start;

    # two streams per session a, b, c and two broadcast-only ones
    my %streams;
    for my $session ('a', 'b', 'c', '') {
        my $q = $session eq '' ? '' : "?sessionId=$session";
        $streams{$session} = [ map { $t->sse("/stream$q") } 1 .. 2 ];
        $_->wait_events(1, 5) for @{ $streams{$session} };
    }

    is($t->request('GET', '/pub')->{json}{activeConnections}, 8,
       "$workers worker(s): activeConnections counts 8 streams");

    my %expect = map { $_ => [] } ('a', 'b', 'c', '');

    for my $i (1 .. 30) {
        my $session = ('a', 'b', 'c', undef)[$i % 4];
        my $id = $t->publish_ok('/pub', { message => "m$i",
                                          defined $session
                                          ? (sessionId => $session) : () });
        if (defined $session) {
            push @{ $expect{$session} }, $id;

        } else {
            push @{ $expect{$_} }, $id for keys %expect;
        }
    }

    for my $session (sort keys %streams) {
        for my $s (@{ $streams{$session} }) {
            my $want = $expect{$session};
            my @got = $s->wait_events(scalar @$want, 5);
            is_deeply([ map { $_->{id} } @got ], $want,
                      "$workers worker(s): stream of "
                      . ($session eq '' ? 'broadcasts' : "session $session")
                      . " got exactly its messages, in order");
        }
    }

    $_->close for map { @$_ } values %streams;

    ok(WebhookSSE::Test::wait_until(sub {
           ($t->request('GET', '/pub')->{json}{activeConnections} // -1) == 0
       }, 5), "$workers worker(s): activeConnections back to 0");

    $t->stop;
}

finish();
