#!/usr/bin/perl

# webhook_redis: three nginx hosts on one Redis share their channels: a
# publish on A reaches streams on B and C with the same id; ids are global
# and ordered across channels; a stream resumes on another host, or on a
# host started later, with no gap and no duplicate; an idempotent retry on
# another host gets the first messageId and delivers nothing twice;
# webhook_status adds the cluster's stream count; another prefix is
# another cluster.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $redis = WebhookSSE::Redis->new->start;
my $url = $redis->url;

sub host
{
    my ($prefix) = @_;

    my $t = WebhookSSE::Test->new(http => <<"EOF")->start;
    webhook_zone zone=chat:1m history=50;
    webhook_redis chat $url prefix=$prefix;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_heartbeat 1s;
                             webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       "host $t->{dir}: in sync with the cluster");
    return $t;
}

sub seq { (id_parts($_[0]))[1] }

# the host's zone holds the cluster's messages up to this id

sub wait_seq
{
    my ($t, $id) = @_;
    return wait_until(sub {
        my $st = $t->request('GET', '/status')->{json} // {};
        ($st->{lastSeq} // 0) >= seq($id);
    }, 10);
}

sub ids { map { $_->{id} } @_ }

my ($A, $B, $C) = map { host('cl1:') } 1 .. 3;

# one cluster epoch: the same on every host

my @epochs = map { $_->request('GET', '/status')->{json}{epoch} } $A, $B, $C;
ok($epochs[0] && $epochs[0] == $epochs[1] && $epochs[1] == $epochs[2],
   'the three hosts share one epoch');
is($redis->cli('GET', 'cl1:epoch'), $epochs[0], 'the epoch is kept in Redis');

# ---- publish on A, streams on B and C --------------------------------------

my $sb = $B->sse('/stream?sessionId=s1');
my $sc = $C->sse('/stream?sessionId=s1');
my $sc0 = $C->sse('/stream');
$_->wait_events(1, 5) for $sb, $sc, $sc0;

my $id1 = $A->publish_ok('/pub', { message => 'one', sessionId => 's1' });
my $id2 = $A->publish_ok('/pub', { message => 'all' });

my @eb = $sb->wait_events(2, 10);
my @ec = $sc->wait_events(2, 10);

is_deeply([ids(@eb)], [$id1, $id2], 'publish on A: stream on B gets both, '
                                    . 'with the ids A answered');
is_deeply([ids(@ec)], [$id1, $id2], 'publish on A: stream on C too');
is($eb[0]{json}{message}, 'one', 'the event carries the message');
is($eb[0]{json}{messageId}, $id1, 'and its messageId');

my @e0 = $sc0->wait_events(1, 10);
is_deeply([ids(@e0)], [$id2], 'a broadcast-only stream on C gets the '
                              . 'broadcast, not the session message');

# global ids ordered across channels and hosts

my @ids;
for my $i (1 .. 6) {
    my $h = ($A, $B, $C)[$i % 3];
    push @ids, $h->publish_ok('/pub', { message => "x$i",
                                        sessionId => "other$i" });
}
is_deeply([map { seq($_) } @ids],
          [sort { $a <=> $b } map { seq($_) } @ids],
          'ids from publishes on all hosts and channels grow in order');
is(scalar(grep { (id_parts($_))[0] != $epochs[0] } @ids), 0,
   'all carry the cluster epoch');

# ---- resume on another host ------------------------------------------------

# the stream on C is gone; A publishes while it is away
$sc->close;

my @missed = map {
    $A->publish_ok('/pub', { message => "missed $_", sessionId => 's1' })
} 1 .. 3;
ok(wait_seq($C, $missed[-1]), 'C has caught up with A');

my $rc = $C->sse('/stream?sessionId=s1',
                 headers => { 'Last-Event-ID' => $id2 });
my @r = $rc->wait_events(4, 10);
is($r[0]{json}{type}, 'connected', 'resume on C: connected');
is_deeply([ids(@r[1 .. 3])], \@missed,
          'resume on C: exactly the messages published on A while away');

my $mark = $A->publish_ok('/pub', { message => 'mark', sessionId => 's1' });
my @next = $rc->wait_events(1, 10);
is_deeply([ids(@next)], [$mark], 'then live, no duplicate');

# a Last-Event-ID handed out by B, used on A
my $ra = $A->sse('/stream?sessionId=s1',
                 headers => { 'Last-Event-ID' => $missed[0] });
my @ra = $ra->wait_events(4, 10);
is_deeply([ids(@ra[1 .. 3])], [@missed[1, 2], $mark],
          'an id seen on C resumes on A with no gap');

# ---- a host started later has the history ----------------------------------

my $D = host('cl1:');
ok(wait_seq($D, $mark), 'a host started later has caught up');

my $rd = $D->sse('/stream?sessionId=s1',
                 headers => { 'Last-Event-ID' => $id1 });
my @rd = $rd->wait_events(6, 10);
is_deeply([ids(@rd[1 .. 5])], [$id2, @missed, $mark],
          'resume on a new host: everything since the id, from the log');

# ---- idempotency across hosts ----------------------------------------------

my $body = { message => 'once', sessionId => 's1' };
my $first = $A->publish('/pub', $body,
                        headers => { 'Idempotency-Key' => 'pay-1' });
is($first->{status}, 200, 'idempotent publish on A: 200');

my $retry = $B->publish('/pub', $body,
                        headers => { 'Idempotency-Key' => 'pay-1' });
is($retry->{status}, 200, 'retry on B: 200');
is($retry->{json}{messageId}, $first->{json}{messageId},
   'retry on B: the first messageId');
is($retry->{headers}{'idempotent-replayed'}, 'true',
   'retry on B: Idempotent-Replayed');

my $other = $C->publish('/pub', { message => 'else', sessionId => 's1' },
                        headers => { 'Idempotency-Key' => 'pay-1' });
is($other->{status}, 422, 'the key for another body on C: 422');

my $after = $A->publish_ok('/pub', { message => 'after', sessionId => 's1' });
my @once = $sb->wait_for_event($after, 10);
is_deeply([ids(@once)], [@missed, $mark, $first->{json}{messageId}, $after],
          'B delivered the idempotent message once');

# ---- activeConnections per host, the cluster's figure in webhook_status -----

# streams open now: B 1 (sb), C 2 (sc0, rc), A 1 (ra), D 1 (rd)
is($A->request('GET', '/pub')->{json}{activeConnections}, 1,
   'activeConnections on A: its own streams');

my $cluster;
ok(wait_until(sub {
       $cluster = $A->request('GET', '/status')->{json}{cluster} // {};
       ($cluster->{streams} // -1) == 5 && ($cluster->{hosts} // 0) == 4;
   }, 15), 'webhook_status: the cluster\'s streams of the four hosts')
    or diag explain $cluster;
is($cluster->{redis}, 'up', 'webhook_status: the link is up');

my $prom = $A->request('GET', '/status?format=prometheus')->{body};
like($prom, qr/^webhook_cluster_streams\{zone="chat"\} 5$/m,
     'Prometheus: the cluster\'s streams');
like($prom, qr/^webhook_redis_up\{zone="chat"\} 1$/m,
     'Prometheus: the link');

# ---- an id this host has not received yet --------------------------------

# a client comes from a host that is ahead: B has not yet got what it saw
ok(wait_seq($B, $after), 'B has caught up');
my ($epoch, $last) = id_parts($after);
my $ahead = "$epoch-" . ($last + 3);

my $sf = $B->sse('/stream?sessionId=s1',
                 headers => { 'Last-Event-ID' => $ahead });
$sf->wait_events(1, 5);

my @four = map {
    $A->publish_ok('/pub', { message => "f$_", sessionId => 's1' })
} 1 .. 4;
is(seq($four[2]), $last + 3, 'the id the client had is the third');

my @fe = $sf->wait_for_event($four[3], 10);
is_deeply([ids(@fe)], [$four[3]],
          'an id ahead of the host: no replay, live after it, no duplicate');
$sf->close;

# ---- the scripts flushed ---------------------------------------------------

sub cached_scripts
{
    my ($n) = ($redis->cli('INFO', 'memory') // '')
              =~ /number_of_cached_scripts:(\d+)/;
    return $n // -1;
}

# (the hosts may load them again at once: their status reports run apart)
$redis->cli('SCRIPT', 'FLUSH');

my $sfs = $B->sse('/stream?sessionId=flush');
$sfs->wait_events(1, 5);

my @flushed = map {
    $_->publish_ok('/pub', { message => 'after flush', sessionId => 'flush' })
} $A, $B;
is_deeply([ids($sfs->wait_events(2, 10))], \@flushed,
          'SCRIPT FLUSH: publishes on both hosts go on and are delivered');
ok(wait_until(sub { cached_scripts() >= 3 }, 10),
   'SCRIPT FLUSH: the hosts load their scripts again');
$sfs->close;

# ---- Redis loses the counter, then everything ---------------------------------

my $sl = $C->sse('/stream?sessionId=lost');
$sl->wait_events(1, 5);

my $l1 = $A->publish_ok('/pub', { message => 'l1', sessionId => 'lost' });
$redis->cli('DEL', 'cl1:seq');
my $l2 = $B->publish_ok('/pub', { message => 'l2', sessionId => 'lost' });
ok(wait_seq($A, $l2), 'A has caught up');
$redis->cli('FLUSHALL');
my $l3 = $A->publish_ok('/pub', { message => 'l3', sessionId => 'lost' });

is_deeply([map { (id_parts($_))[0] } $l1, $l2, $l3], [($epochs[0]) x 3],
          'counter or data lost: the epoch stays');
ok(seq($l2) > seq($l1) && seq($l3) > seq($l2),
   'counter or data lost: ids still grow');
my @le = $sl->wait_for_event($l3, 10);
is_deeply([ids(@le)], [$l1, $l2, $l3],
          'counter or data lost: streams get the new messages');
$sl->close;

# ---- another prefix, another cluster ----------------------------------------

my $E = host('cl2:');
my $se = $E->sse('/stream?sessionId=s1');
$se->wait_events(1, 5);

my $x = $A->publish_ok('/pub', { message => 'cl1 only', sessionId => 's1' });
my $y = $E->publish_ok('/pub', { message => 'cl2 only', sessionId => 's1' });

my @ee = $se->wait_events(1, 10);
is_deeply([ids(@ee)], [$y], 'another prefix: only its own messages');
is($se->pending_events, 0, 'nothing of the first cluster');
isnt((id_parts($y))[0] . '-' . seq($y), $x, 'its own ids');

WebhookSSE::SSE->close_all;
finish();
