#!/usr/bin/perl

# 1000 rapid publishes (half on fresh connections that land on either
# worker, half pipelined on one connection) arrive on every matching stream
# in publish order, without gaps or duplicates.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=1000;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

my $N = 1000;

my $sess  = $t->sse('/stream?sessionId=o');
my $sess2 = $t->sse('/stream?sessionId=o');
my $other = $t->sse('/stream?sessionId=other');
my $none  = $t->sse('/stream');
my @streams = ($sess, $sess2, $other, $none);

for my $s (@streams) {
    my ($c) = $s->wait_events(1, 5);
    die "no connected event\n" unless $c;
}

# even i: session "o", odd i: broadcast
sub body_for
{
    my ($i) = @_;
    return $i % 2 ? { message => "m$i", n => $i }
                  : { message => "m$i", n => $i, sessionId => 'o' };
}

my @ids;

for my $i (0 .. $N / 2 - 1) {
    my $r = $t->publish('/pub', body_for($i));
    die "publish $i: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    push @ids, $r->{json}{messageId};
    # keep the streams drained
    WebhookSSE::SSE::pump_many(\@streams, 0);
}

my @res = $t->publish_pipelined('/pub',
                                [ map { body_for($_) } $N / 2 .. $N - 1 ]);
is(scalar(grep { $_->{status} == 200 } @res), $N / 2,
   'pipelined publishes all answered 200');
push @ids, map { $_->{json}{messageId} } @res;

is(scalar @ids, $N, "$N publishes accepted");

my @seq = map { (id_parts($_))[1] } @ids;
my @ep  = map { (id_parts($_))[0] } @ids;
is_deeply(\@seq, [ 1 .. $N ], 'message ids have seq 1..N in publish order');
is(scalar(keys %{{ map { $_ => 1 } @ep }}), 1, 'all ids share one epoch');

my @even = @ids[ grep { !($_ % 2) } 0 .. $N - 1 ];
my @odd  = @ids[ grep { $_ % 2 } 0 .. $N - 1 ];

my %want = ('session o' => \@ids, 'session o (second stream)' => \@ids,
            'other session' => \@odd, 'no session' => \@odd);
my @names = ('session o', 'session o (second stream)', 'other session',
             'no session');

for my $k (0 .. $#streams) {
    my $s = $streams[$k];
    my $w = $want{ $names[$k] };
    my @ev = $s->wait_events(scalar @$w, 15);
    my @got = map { $_->{id} // '' } @ev;

    is(scalar @got, scalar @$w, "$names[$k]: received all "
                                . scalar(@$w) . " events");
    is_deeply(\@got, $w, "$names[$k]: in publish order, no gaps, no "
                         . "duplicates")
        or do {
            my %seen;
            my @dup = grep { $seen{$_}++ } @got;
            diag "dups: @dup[0 .. ($#dup < 5 ? $#dup : 4)]" if @dup;
        };

    my @n = map { $_->{json} ? $_->{json}{n} : -1 } @ev;
    my @wn = map { (id_parts($_))[1] - 1 } @$w;
    is_deeply(\@n, \@wn, "$names[$k]: payload matches the id");

    my @more = $s->wait_events(1, 0.2);
    ok(!@more,
       "$names[$k]: nothing after the last message");
}

$_->close for @streams;


# ----- concurrent publishers ----------------------------------------------------
# 4 processes publish 100 messages each at once (over both workers): every
# stream gets all 400, ids strictly increasing, and all streams agree.

{
    my @s = map { $t->sse('/stream?sessionId=c') } 1 .. 4;
    push @s, map { $t->sse('/stream') } 1 .. 2;
    for (@s) { $_->wait_events(1, 5) or die "no connected event\n" }

    my @kids;
    for my $k (0 .. 3) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $fail = 0;
            for my $i (0 .. 99) {
                my $r = eval {
                    $t->publish('/pub', $i % 2
                        ? { message => "k$k-$i", k => $k, i => $i }
                        : { message => "k$k-$i", k => $k, i => $i,
                            sessionId => 'c' });
                };
                $fail++ unless $r && $r->{status} == 200;
            }
            POSIX::_exit($fail ? 1 : 0);
        }
        push @kids, $pid;
    }

    # drain while the children publish (bounded by the overall wait below)
    my $deadline = time + 20;
    my $left = @kids;
    my %status;
    while ($left && time < $deadline) {
        WebhookSSE::SSE::pump_many(\@s, 0.05);
        for my $pid (@kids) {
            next if exists $status{$pid};
            if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
                $status{$pid} = $?;
                $left--;
            }
        }
    }
    is($left, 0, 'concurrent publishers finished');
    is(scalar(grep { $_ != 0 } values %status), 0,
       'concurrent publishers: all 400 publishes answered 200');

    my @got = map { [ map { $_->{id} } $_->wait_events(400, 10) ] } @s[0 .. 3];
    my @bc  = map { [ map { $_->{id} } $_->wait_events(200, 10) ] } @s[4, 5];

    is(scalar @{ $got[0] }, 400, 'concurrent: session stream got all 400');
    my @seq = map { (id_parts($_))[1] } @{ $got[0] };
    ok(!grep({ $seq[$_] <= $seq[$_ - 1] } 1 .. $#seq),
       'concurrent: ids strictly increasing on the stream');
    is(scalar(keys %{{ map { $_ => 1 } @{ $got[0] } }}), 400,
       'concurrent: no duplicates');
    is_deeply($got[$_], $got[0], "concurrent: session stream $_ agrees "
                                 . 'on the order') for 1 .. 3;

    my %is_bc = map { $_->{id} => 1 }
                grep { $_->{json} && !exists $_->{json}{sessionId} }
                @{ $s[0]{events} };
    my @want_bc = grep { $is_bc{$_} } @{ $got[0] };
    is(scalar @want_bc, 200, 'concurrent: 200 of them broadcasts');
    is_deeply($bc[$_], \@want_bc, "concurrent: broadcast-only stream $_ "
                                  . 'got exactly the broadcasts, same order')
        for 0, 1;

    # per publisher, its own messages keep their order
    my $bad = 0;
    for my $k (0 .. 3) {
        my @i = map { $_->{json}{i} }
                grep { $_->{json} && $_->{json}{type} eq 'webhook_message'
                       && $_->{json}{k} == $k } @{ $s[0]{events} };
        $bad++ unless join(',', @i) eq join(',', 0 .. 99);
    }
    is($bad, 0, 'concurrent: each publisher\'s messages in its order');

    $_->close for @s;
}

finish();
