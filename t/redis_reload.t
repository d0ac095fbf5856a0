#!/usr/bin/perl

# webhook_redis across nginx -s reload and a killed worker: the old and the
# new worker holding the subscription overlap (the zone takes each message
# once); the one killed is replaced and catches up from the cluster log; a
# stream that resumes by Last-Event-ID gets every message once, in order.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $redis = WebhookSSE::Redis->new->start;
my $url = $redis->url;

my $http = <<"EOF";
    webhook_zone zone=chat:1m history=1000;
    webhook_redis chat $url prefix=rl:;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_heartbeat 1s;
                             webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

my ($A, $B) = map { WebhookSSE::Test->new(http => $http)->start } 1 .. 2;

for my $t ($A, $B) {
    ok($t->wait_error_log(qr/in sync with the cluster/, 15), 'in sync');
}

my (@acked, @got);
my $n = 0;

sub publish_some
{
    my ($count) = @_;
    push @acked, $A->publish_ok('/pub', { message => 'm' . ++$n,
                                          sessionId => 's1' })
        for 1 .. $count;
}

# follows the stream on B, reopening it with Last-Event-ID when it ends

my $stream;

sub open_stream
{
    my %h = @got ? ('Last-Event-ID' => $got[-1]) : ();
    my $ok = wait_until(sub {
        $stream = $B->sse('/stream?sessionId=s1', headers => \%h);
        my @ev = $stream->wait_events(1, 5);
        return 1 if @ev && ($ev[0]{json}{type} // '') eq 'connected';
        # an exiting or not yet synced worker says to come back
        $stream->close;
        return 0;
    }, 20);
    die "no stream on B\n" unless $ok;
}

sub follow
{
    my ($until) = @_;
    my $deadline = time + 20;
    while (time < $deadline) {
        while (my @ev = $stream->wait_events(1, 0.2)) {
            push @got, map { $_->{id} } @ev;
            return 1 if $got[-1] eq $until;
        }
        open_stream() if $stream->is_closed(0);
    }
    return 0;
}

open_stream();
publish_some(20);
ok(follow($acked[-1]), 'stream on B: live');

# ---- reload under traffic --------------------------------------------------

for my $round (1 .. 3) {
    publish_some(5);
    my @old = $B->reload;
    publish_some(10);
    ok($B->wait_pids_gone(\@old, 20), "reload $round: old workers gone");
    publish_some(5);
    ok(follow($acked[-1]), "reload $round: the stream resumed");
}

is_deeply(\@got, \@acked, 'through reloads: every message once, in order');

# ---- the worker holding the subscription killed ----------------------------

my ($pid) = ($B->error_log =~ /.*\[info\] (\d+)#\d+: webhook redis[^\n]*in sync/s);
ok($pid && kill(0, $pid), "the subscriber is worker $pid");

my ($epoch) = id_parts($acked[-1]);
my $synced = () = $B->error_log =~ /in sync with the cluster/g;

kill 'KILL', $pid;
publish_some(10);

ok(wait_until(sub {
       my $now = () = $B->error_log =~ /in sync with the cluster/g;
       $now > $synced;
   }, 20), 'a new subscriber caught up');

ok(follow($acked[-1]), 'the stream got what was published meanwhile');
is_deeply(\@got, \@acked, 'after the crash: every message once, in order');

my $st = $B->request('GET', '/status')->{json};
is($st->{epoch}, $epoch, 'the zone kept the cluster epoch');

WebhookSSE::SSE->close_all;
$B->expect_log(qr/exited on signal 9/);
finish();
