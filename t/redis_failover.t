#!/usr/bin/perl

# webhook_redis when Redis goes away mid-traffic, killed (kill -9, with
# appendonly yes) and stopped gracefully (SHUTDOWN): publishes are answered
# 503 at once, open streams stay open (heartbeats go on); once Redis is
# back every acknowledged message reaches the streams on both hosts exactly
# once and in order; each outage is one error line and one notice per host.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $redis = WebhookSSE::Redis->new(appendonly => 1)->start;
my $url = $redis->url;

my $http = <<"EOF";
    webhook_zone zone=chat:1m history=1000;
    webhook_redis chat $url prefix=fo: timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_heartbeat 1s;
                             webhook_replay 0; }
    }
EOF

my ($A, $B) = map { WebhookSSE::Test->new(http => $http)->start } 1 .. 2;

for my $t ($A, $B) {
    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       'host in sync with the cluster');
}

my $sa = $A->sse('/stream?sessionId=s1');
my $sb = $B->sse('/stream?sessionId=s1');
$_->wait_events(1, 5) for $sa, $sb;

my (@acked, %uncertain, $n);

# one publish; returns its answer and how long it took

sub publish
{
    my ($t, $what) = @_;
    my $body = sprintf '%s %d', $what, ++$n;
    my $start = time;
    my $r = $t->publish('/pub', { message => $body, sessionId => 's1' },
                        timeout => 10);
    my $took = time - $start;

    if ($r->{status} == 200) {
        push @acked, [ $r->{json}{messageId}, $body ];

    } elsif (($r->{json}{error} // '') =~ /may or may not/) {
        $uncertain{$body} = 1;
    }

    return ($r, $took);
}

sub backs
{
    my ($t) = @_;
    my $log = $t->error_log;
    return scalar(() = $log =~ /\[notice\][^\n]*webhook redis[^\n]* is back/g);
}

my $outages = 0;

sub drain_comments
{
    my ($s) = @_;
    $s->pump(0.05);
    1 while defined $s->wait_comment(0);
}

for my $how ('kill -9', 'SHUTDOWN') {

    publish($_ % 2 ? $A : $B, "before $how") for 1 .. 10;

    if ($how eq 'kill -9') {
        $redis->kill9;
    } else {
        $redis->shutdown;
    }

    drain_comments($_) for $sa, $sb;

    # the first answers may find the connection still open
    my ($r, $took);
    for (1 .. 5) {
        ($r, $took) = publish($A, "down $how");
    }

    is($r->{status}, 503, "$how: a publish on A is answered 503");
    like($r->{json}{error}, qr/Redis/, "$how: the error names Redis");
    cmp_ok($took, '<', 3, "$how: at once");

    ($r, $took) = publish($B, "down $how");
    is($r->{status}, 503, "$how: on B too");

    ok(defined $sa->wait_comment(5) && defined $sb->wait_comment(5),
       "$how: the streams still get heartbeats");
    ok(!$sa->is_closed(0) && !$sb->is_closed(0),
       "$how: the streams stay open");

    $redis->start;

    my $back = wait_until(sub {
        (publish($A, "back $how"))[0]{status} == 200
            && (publish($B, "back $how"))[0]{status} == 200;
    }, 20);
    ok($back, "$how: publishes succeed again once Redis is back");

    $outages++;
    for my $t ($A, $B) {
        ok(wait_until(sub { backs($t) == $outages }, 20),
           "$how: the host says once that its link is back");
    }

    publish($_ % 2 ? $A : $B, "after $how") for 1 .. 10;
}

my $last = $acked[-1][0];

for my $s ([$sa, 'A'], [$sb, 'B']) {
    my ($stream, $name) = @$s;
    my @ev = $stream->wait_for_event($last, 20);

    ok(@ev, "stream on $name: got the last acknowledged message");

    my @got = map { [ $_->{id}, $_->{json}{message} ] } @ev;
    my %got = map { $_->[1] => 1 } @got;

    my @lost = grep { !$got{ $_->[1] } } @acked;
    is(scalar @lost, 0, "stream on $name: every acknowledged message "
                        . "arrived") or diag explain \@lost;

    my %count;
    $count{ $_->[1] }++ for @got;
    is(scalar(grep { $count{$_} > 1 } keys %count), 0,
       "stream on $name: none twice");

    my %acked = map { $_->[1] => $_->[0] } @acked;
    my @unknown = grep { !$acked{ $_->[1] } && !$uncertain{ $_->[1] } } @got;
    is(scalar @unknown, 0, "stream on $name: nothing that was refused")
        or diag explain \@unknown;

    my @wrong = grep { $acked{ $_->[1] } && $acked{ $_->[1] } ne $_->[0] }
                @got;
    is(scalar @wrong, 0, "stream on $name: with the ids the publishes got");

    my @seqs = map { (id_parts($_->[0]))[1] } @got;
    is_deeply(\@seqs, [sort { $a <=> $b } @seqs],
              "stream on $name: in order");
}

for my $t ([$A, 'A'], [$B, 'B']) {
    my $log = $t->[0]->error_log;
    my $down = () = $log =~ /\[error\][^\n]*webhook redis[^\n]* down:/g;
    is($down, 2, "host $t->[1]: one error line per outage");
    is(backs($t->[0]), 2, "host $t->[1]: one notice per recovery");
}

WebhookSSE::SSE->close_all;
finish();
