#!/usr/bin/perl

# Each zone has an epoch of its own, also zones made in the same start:
# an id of one zone used as Last-Event-ID on another zone's stream is not
# taken for one of its own (which would skip messages), it gets a full
# replay.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=one:1m;
    webhook_zone zone=two:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub/one { webhook_publish one; }
        location = /pub/two { webhook_publish two; }
        location = /stream/two { webhook_stream two; webhook_replay 0; }
    }
EOF

my @one = map { $t->publish_ok('/pub/one', { message => "one $_",
                                             sessionId => 's' }) } 1 .. 3;
my @two = map { $t->publish_ok('/pub/two', { message => "two $_",
                                             sessionId => 's' }) } 1 .. 3;

my ($e1) = id_parts($one[1]);
my ($e2) = id_parts($two[1]);
isnt($e1, $e2, "zones made together have their own epochs ($e1, $e2)");

my $s = $t->sse('/stream/two?sessionId=s',
                headers => { 'Last-Event-ID' => $one[1] });
my @ev = $s->wait_events(4, 5);
is_deeply([ map { $_->{json}{message} } @ev[1 .. $#ev] ],
          [ 'two 1', 'two 2', 'two 3' ],
          "another zone's id gets the full replay, nothing skipped");

finish();
