#!/usr/bin/perl

# Four workers: 40 streams spread across them (reuseport), every message
# reaches every matching stream whichever worker took the publish, delivery
# across workers is immediate, and activeConnections counts all workers
# exactly, also after clients vanish (RST) or close.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(workers => 4, http => <<'EOF')->start;
    webhook_zone zone=chat:8m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /pub { webhook_publish chat; }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            add_header X-Worker-Pid $pid always;
        }
    }
EOF

is(scalar(my @w = $t->worker_pids), 4, '4 worker processes');

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : undef;
}

# 10 sessions x 3 streams, and 10 streams without a session
my (@streams, %session_of);
for my $k (0 .. 9) {
    for (1 .. 3) {
        my $s = $t->sse("/stream?sessionId=w$k");
        $session_of{$s} = "w$k";
        push @streams, $s;
    }
}
for (1 .. 10) {
    my $s = $t->sse('/stream');
    $session_of{$s} = undef;
    push @streams, $s;
}

ok(WebhookSSE::SSE::wait_all(\@streams,
                             sub { $_[0]->pending_events >= 1 }, 10),
   '40 streams connected');
$_->wait_events(1, 0) for @streams;

my %pids;
$pids{ $_->{headers}{'x-worker-pid'} // 'none' }++ for @streams;
ok(!$pids{none}, 'streams carry X-Worker-Pid (add_header works)');
ok(keys %pids >= 3, 'streams are spread over ' . scalar(keys %pids)
                    . ' workers (at least 3 of 4)')
    or diag explain \%pids;

is(active(), 40, 'activeConnections: 40 across all workers');

# Publish targeted messages and broadcasts over fresh connections (taken by
# any worker).
my @pub;
for my $i (0 .. 29) {
    my $body = $i % 3 == 2 ? { message => "b$i" }
                           : { message => "t$i", sessionId => 'w' . ($i % 10) };
    my $id = $t->publish_ok('/pub', $body);
    push @pub, [ $id, $body->{sessionId} ];
}

sub want_for
{
    my ($session) = @_;
    return [ map { $_->[0] }
             grep { !defined $_->[1]
                    || (defined $session && $_->[1] eq $session) } @pub ];
}

{
    my $t0 = time;
    my $last = $t->publish_ok('/pub', { message => 'last broadcast' });
    push @pub, [ $last, undef ];

    my $ok = WebhookSSE::SSE::wait_all(\@streams, sub {
        my ($s) = @_;
        return grep { ($_->{id} // '') eq $last } @{ $s->{events} };
    }, 5);
    my $dt = time - $t0;
    ok($ok, 'the final broadcast reached all 40 streams');
    ok($dt < 1, sprintf('cross-worker delivery is immediate (%.3f s for '
                        . '40 streams)', $dt));
}

{
    my $bad = 0;
    for my $s (@streams) {
        my $want = want_for($session_of{$s});
        my @got = map { $_->{id} } $s->wait_events(scalar @$want, 2);
        unless (join(',', @got) eq join(',', @$want)) {
            $bad++;
            diag "stream " . ($session_of{$s} // 'none') . " on worker "
                 . ($s->{headers}{'x-worker-pid'} // '?') . ": got "
                 . scalar(@got) . " want " . scalar(@$want)
                if $bad <= 3;
        }
    }
    is($bad, 0, 'every stream got exactly its session\'s messages and all '
                . 'broadcasts, in order, whichever worker published');
}

# vanished clients: RST without reading
my @gone = splice @streams, 0, 10;
$_->abort for @gone;
ok(wait_until(sub { (active() // -1) == 30 }, 5),
   'activeConnections: 30 after 10 clients vanished (RST)')
    or diag 'activeConnections: ' . (active() // 'undef');

my @closed = splice @streams, 0, 10;
$_->close for @closed;
ok(wait_until(sub { (active() // -1) == 20 }, 5),
   'activeConnections: 20 after 10 clients closed')
    or diag 'activeConnections: ' . (active() // 'undef');

{
    my $id = $t->publish_ok('/pub', { message => 'after the departures' });
    ok(WebhookSSE::SSE::wait_all(\@streams, sub {
           grep { ($_->{id} // '') eq $id } @{ $_[0]{events} } }, 5),
       'remaining 20 streams still receive after others vanished');
}

is(active(), 20, 'activeConnections still 20 after the publish');

# a worker crash: its streams end, the count drops by exactly those, and
# the zone is neither locked nor corrupt for the others
{
    my %on;
    push @{ $on{ $_->{headers}{'x-worker-pid'} // '?' } }, $_ for @streams;
    my ($victim) = sort { @{ $on{$b} } <=> @{ $on{$a} } } grep { /^\d+$/ }
                   keys %on;
    my @dead = @{ $on{$victim} };
    my @alive = grep { ($_->{headers}{'x-worker-pid'} // '') ne $victim }
                @streams;

    $t->expect_log(qr/\[alert\].*worker process $victim exited on signal 9/);
    kill 'KILL', $victim;

    ok(WebhookSSE::SSE::wait_all(\@dead, sub { $_[0]{closed} }, 5),
       'crash: the ' . scalar(@dead) . ' streams of the killed worker end');
    ok(wait_until(sub { my @p = $t->worker_pids;
                        @p == 4 && !grep { $_ == $victim } @p }, 5),
       'crash: the master starts a replacement worker');
    ok(wait_until(sub { (active() // -1) == @alive }, 5),
       'crash: activeConnections drops to exactly ' . scalar(@alive))
        or diag 'activeConnections: ' . (active() // 'undef');

    my @fresh = map { $t->sse('/stream?sessionId=w9') } 1 .. 8;
    WebhookSSE::SSE::wait_all(\@fresh, sub { $_[0]->pending_events }, 5);
    $_->wait_events(1, 0) for @fresh;

    my $id = $t->publish_ok('/pub', { message => 'after the crash' });
    ok(WebhookSSE::SSE::wait_all([ @alive, @fresh ], sub {
           grep { ($_->{id} // '') eq $id } @{ $_[0]{events} } }, 5),
       'crash: surviving and new streams receive the next broadcast');
    is(active(), @alive + @fresh, 'crash: count exact with new streams');

    @streams = (@alive, @fresh);
}

$_->close for @streams;
ok(wait_until(sub { (active() // -1) == 0 }, 5),
   'activeConnections: 0 after every stream closed')
    or diag 'activeConnections: ' . (active() // 'undef');

finish();
