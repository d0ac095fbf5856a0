#!/usr/bin/perl

# The zone finds each publish's session among thousands: 3000 sessions made
# in a random order into the zone's rbtree of channels, each holds exactly
# its own messages; then, in a zone too small for them all, thousands more
# sessions push the least recently used ones out (their channels leave the
# tree from anywhere in it), and every session still there, or made again,
# holds its own messages and no other's.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $N = 3000;

my $t = WebhookSSE::Test->new(workers => 2, http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=4;
    webhook_zone zone=tiny:256k history=4;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /pub          { webhook_publish chat; }
        location = /history      { webhook_history chat; }
        location = /status       { webhook_status chat; }

        location = /tiny/pub     { webhook_publish tiny; }
        location = /tiny/history { webhook_history tiny; }
        location = /tiny/status  { webhook_status tiny; }
    }
EOF

# publishes in pipelines of 500 (keepalive_requests is 1000)
sub publish_all
{
    my ($path, @bodies) = @_;
    my @res;

    for (my $k = 0; $k < @bodies; $k += 500) {
        my $last = $k + 499 < $#bodies ? $k + 499 : $#bodies;
        push @res, $t->publish_pipelined($path, [ @bodies[$k .. $last] ]);
    }

    return @res;
}

# the messages a session holds, oldest first
sub held
{
    my ($prefix, $session) = @_;
    my $r = $t->request('GET', "$prefix/history?sessionId=$session&limit=100");
    die "history of $session: $r->{status} $r->{body}\n"
        unless $r->{status} == 200 && $r->{json};
    return map { $_->{message} } @{ $r->{json}{events} };
}

srand(7);

my @order = map { $_->[1] } sort { $a->[0] <=> $b->[0] }
            map { [rand, $_] } 0 .. $N - 1;

# two messages each, the second round in another order
my @res = publish_all('/pub',
    map({ { message => "first $_", sessionId => "s$_" } } @order),
    map({ { message => "second $_", sessionId => "s$_" } } reverse @order));

is(scalar(grep { $_->{status} == 200 } @res), 2 * $N,
   2 * $N . " messages published to $N sessions");

is($t->request('GET', '/status')->{json}{channels}, $N,
   "the zone holds $N session channels");

my $bad = 0;

for my $i (0 .. $N - 1) {
    my @got = held('', "s$i");
    next if "@got" eq "first $i second $i";
    diag("s$i holds (@got)") if $bad++ < 5;
}

is($bad, 0, "each of $N sessions holds its own two messages, in order");

my @none = held('', 'nobody');
is(scalar(@none), 0, 'a session never published to holds nothing');

# the tiny zone: 6000 sessions, far more than it holds; the oldest go
my $M = 6000;

@res = publish_all('/tiny/pub',
    map { { message => "m $_ " . ('x' x 100), sessionId => "t$_" } }
    0 .. $M - 1);

is(scalar(grep { $_->{status} == 200 } @res), $M,
   "$M publishes to a 256k zone all accepted");

my $kept = $t->request('GET', '/tiny/status')->{json}{channels};

ok($kept > 50 && $kept < $M,
   "the least recently used sessions were evicted ($kept of $M kept)");

my ($own, $gone, $wrong) = (0, 0, 0);

for my $i (0 .. $M - 1) {
    my @got = held('/tiny', "t$i");

    if (!@got) {
        $gone++;

    } elsif (@got == 1 && $got[0] eq "m $i " . ('x' x 100)) {
        $own++;

    } else {
        diag("t$i holds (@got)") if $wrong++ < 5;
    }
}

is($wrong, 0, 'no session holds another session\'s message');
is($own, $kept, "the $kept sessions kept hold their own message");
ok($gone > 0, "$gone evicted sessions hold nothing");

# the evicted ones made again, in between those kept
@res = publish_all('/tiny/pub',
    map { { message => "again $_", sessionId => "t$_" } } 0 .. 199);

is(scalar(grep { $_->{status} == 200 } @res), 200,
   '200 evicted sessions published to again');

$bad = 0;

for my $i (0 .. 199) {
    my @got = held('/tiny', "t$i");
    next if "@got" eq "again $i";
    diag("t$i holds (@got)") if $bad++ < 5;
}

is($bad, 0, 'each session made again holds only its new message');

$t->check_error_log;

finish();
