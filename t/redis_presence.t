#!/usr/bin/perl

# webhook_presence with webhook_redis: two nginx hosts (two workers each)
# on one Redis; a session's streams on A and on B are counted on either
# host (GET one session, POST many), "since" is the oldest stream of all
# hosts; a stream's end is seen on the other host; a reload of a host
# counts no stream twice on the other; while Redis is down a
# presence request is answered 503 JSON at once and the streams stay open;
# once Redis is back (empty: its data is lost) the counts are right again;
# a host stopped gracefully leaves the counts at once, a host killed with
# -9 within the documented bound (7 s).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $SECRET = 'pr3sence';

# the documented bound for a host that dies without a word, and a margin
# for a slow shared machine
my $BOUND = 7;
my $SLACK = 5;

my $redis = WebhookSSE::Redis->new->start;
my $url = $redis->url;

my $http = <<"EOF";
    webhook_zone zone=chat:1m history=50;
    webhook_redis chat $url prefix=pr: timeout=1s;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /stream   { webhook_stream chat; webhook_heartbeat 1s;
                               webhook_replay 0; }
        location = /presence { webhook_presence chat;
                               webhook_secret $SECRET; }
    }
EOF

sub host
{
    my $t = WebhookSSE::Test->new(workers => 2, http => $http)->start;
    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       "host $t->{dir}: in sync with the cluster");
    return $t;
}

my ($A, $B, $C) = map { host() } 1 .. 3;

sub presence
{
    my ($t, $session) = @_;
    return $t->request('GET', "/presence?sessionId=$session",
                       headers => { 'X-Webhook-Secret' => $SECRET });
}

sub streams
{
    my ($t, $session) = @_;
    my $r = presence($t, $session);
    return $r->{status} == 200 ? $r->{json}{streams} : -1;
}

# waits until every host in @$hosts counts $n streams of $session

sub wait_count
{
    my ($hosts, $session, $n, $timeout) = @_;
    return wait_until(sub {
        !grep { streams($_, $session) != $n } @$hosts;
    }, $timeout // 10);
}

sub open_stream
{
    my ($t, $session) = @_;
    my $before = int(time * 1000);
    my $s = $t->sse("/stream?sessionId=$session");
    my @ev = $s->wait_events(1, 5);
    is($ev[0]{json}{type}, 'connected', "a stream of $session is open");
    return ($s, $before, int(time * 1000) + 1);
}

# ---- the sum over hosts ----------------------------------------------------

is(presence($A, 's1')->{json}{streams}, 0, 'no streams yet: 0');
is(presence($A, 's1')->{json}{since}, undef, 'no streams yet: since null');

my ($b1, $b1_from, $b1_to) = open_stream($B, 's1');
my ($a1) = open_stream($A, 's1');
my ($a2) = open_stream($A, 's1');
my ($c1) = open_stream($C, 's2');

ok(wait_count([$A, $B, $C], 's1', 3), 's1: 2 streams on A and 1 on B: '
                                       . 'every host counts 3');
ok(wait_count([$A, $B, $C], 's2', 1), 's2: the stream on C is counted '
                                       . 'everywhere');

my $pa = presence($A, 's1')->{json};
my $pb = presence($B, 's1')->{json};
is($pa->{sessionId}, 's1', 'the answer names the session');
is($pa->{since}, $pb->{since}, 'A and B give the same "since"');
ok($pa->{since} >= $b1_from && $pa->{since} <= $b1_to,
   '"since" is when the oldest stream (on B) opened')
    or diag "since $pa->{since}, opened in [$b1_from, $b1_to]";

my $list = $B->request('POST', '/presence',
                       headers => { 'X-Webhook-Secret' => $SECRET,
                                    'Content-Type' => 'application/json' },
                       body => '{"sessionIds":["s1","s2","nobody"]}');
is($list->{status}, 200, 'POST a list on B: 200');
is_deeply([map { $_->{streams} } @{ $list->{json}{sessions} // [] }],
          [3, 1, 0], 'POST a list on B: the sums, in the order asked');
is($list->{json}{sessions}[2]{since}, undef,
   'a session without streams: since null');

is($A->request('GET', '/presence?sessionId=s1')->{status}, 401,
   'the presence location still wants the secret');

# ---- a stream ends ---------------------------------------------------------

$b1->close;
ok(wait_count([$A, $B], 's1', 2), 'the stream on B closed: 2 on both hosts');
my $since = presence($B, 's1')->{json}{since};
ok($since > $pa->{since}, '"since" is now the oldest stream left (on A)');

# ---- a reload of A ---------------------------------------------------------

# the old workers end their streams and leave; the new ones count afresh:
# B never counts a stream twice

my @old = $A->reload;
ok($a1->is_closed(10) && $a2->is_closed(10), 'reload of A: its streams end');
ok(wait_count([$B], 's1', 0, $BOUND + $SLACK), 'reload of A: B counts none '
                                                . 'of them');
ok($A->wait_pids_gone(\@old, 10), 'reload of A: the old workers are gone');

($a1) = open_stream($A, 's1');
($a2) = open_stream($A, 's1');
ok(wait_count([$A, $B], 's1', 2), 'the streams back on the new workers of '
                                   . 'A: 2 on both hosts, not 4');

# ---- Redis down ------------------------------------------------------------

$redis->kill9;

my ($r, $took);
ok(wait_until(sub {
       my $start = time;
       $r = presence($A, 's1');
       $took = time - $start;
       $r->{status} == 503;
   }, 10), 'Redis down: presence on A is answered 503');
like($r->{json}{error} // '', qr/Redis/, 'Redis down: a JSON error naming '
                                         . 'Redis');
is($r->{json}{success}, JSON::PP::false(), 'Redis down: success false');
cmp_ok($took, '<', 3, 'Redis down: at once (timeout= is 1 s)');
is(presence($C, 's2')->{status}, 503, 'Redis down: on C too');

for my $s ([$a1, 'A'], [$c1, 'C']) {
    1 while defined $s->[0]->wait_comment(0);
    ok(defined $s->[0]->wait_comment(5) && !$s->[0]->is_closed(0),
       "Redis down: the stream on $s->[1] stays open (heartbeats)");
}

# ---- Redis back, empty: every host writes its counts again -----------------

$redis->start;

ok(wait_count([$A, $B, $C], 's1', 2, 20), 'Redis back (its data lost): s1 '
                                           . 'counted 2 again everywhere');
ok(wait_count([$A, $B, $C], 's2', 1), 'and s2 1');

# ---- a host stopped --------------------------------------------------------

my ($c2) = open_stream($C, 's1');
ok(wait_count([$A, $B], 's1', 3), 'a stream of s1 on C: 3');

my $start = time;
$C->stop;
ok(wait_count([$A, $B], 's1', 2, $BOUND + $SLACK),
   'C stopped gracefully: its stream leaves the count');
diag sprintf 'C stopped: gone from the count in %.1f s', time - $start;
ok(wait_count([$A, $B], 's2', 0), 'and s2 has none');

# ---- a host killed ---------------------------------------------------------

my ($b2) = open_stream($B, 's1');
ok(wait_count([$A], 's1', 3), 'a stream of s1 on B again: 3');

$B->expect_log(qr/exited on signal 9/);
my @pids = ($B->master_pid, $B->worker_pids);
$start = time;
kill 'KILL', @pids;
ok($B->wait_pids_gone(\@pids, 5), 'B killed with -9');
$B->{running} = 0;

ok(wait_count([$A], 's1', 2, $BOUND + $SLACK),
   "B killed: its stream leaves the count within $BOUND s (+ $SLACK s "
   . 'margin)');
diag sprintf 'B killed: gone from the count in %.1f s', time - $start;

is(presence($A, 's1')->{json}{streams}, 2, 'A keeps counting its own 2');

WebhookSSE::SSE->close_all;
finish();
