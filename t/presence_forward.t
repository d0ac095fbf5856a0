#!/usr/bin/perl

# webhook_presence_forward: a session's join (0 -> 1 open streams) and
# leave (the last stream gone and the grace period over) are POSTed
# through the outbound queue, signed the Standard Webhooks way and
# retried like messages, with real streams on 2 workers: one join however
# many streams, no leave while a stream is open or when one comes back
# within the grace period, exactly one leave after a worker is killed with
# -9, none for sessions back within it after a reload.  Receivers as users
# write them check the signatures: Express with the npm standardwebhooks
# package, Flask with Python's hmac (its first answer to each event is a
# 503: every event is retried once, under the same webhook-id).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $GRACE = 3;

my $t = WebhookSSE::Test->new(workers => 2, http => '');
my $node = WebhookSSE::Receiver->start(node => $t->dir, secret => $SECRET);
my $py = WebhookSSE::Receiver->start(python => $t->dir, secret => $SECRET,
                                     plan => '503,200');
my $np = $node->port;
my $pp = $py->port;

# one endpoint at a time in queue order: Express sees the events in the
# order the zone queued them (http-level webhook_forward_* settings); an
# attempt of the killed worker holds the endpoint until its lease ends
# (the timeout and 2 s)

$t->set_config(http => <<"EOF");
    webhook_zone zone=chat:1m history=100;

    webhook_presence_forward chat http://127.0.0.1:$np/presence
                             secret=$SECRET;
    webhook_presence_forward chat http://127.0.0.1:$pp/presence
                             secret=$SECRET;

    webhook_forward_rate off;
    webhook_forward_concurrency 1;
    webhook_forward_retry 200ms;
    webhook_forward_timeout 5s;
    webhook_presence_grace ${GRACE}s;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            add_header X-Worker \$pid always;
        }

        location = /nograce {
            webhook_stream chat;
            webhook_replay 0;
            webhook_presence_grace off;
        }
    }
EOF
$t->start;


sub open_stream
{
    my ($session, $path) = @_;
    my $s = $t->sse(($path // '/stream') . "?sessionId=$session");
    my @ev = $s->wait_events(1, 5);
    die "no connected event on a stream of $session\n"
        unless @ev && $ev[0]{json}{type} eq 'connected';
    $s->{pid} = $s->{headers}{'x-worker'};
    return $s;
}

# Express's events of a session (of a type), each once: delivery is at
# least once (an attempt of the killed worker may have reached Express
# and is made again, under the same webhook-id)
sub events
{
    my ($session, $type, @req) = @_;
    my %seen;
    @req = $node->requests unless @req;
    return grep { ref $_->{body} eq 'HASH'
                  && ($_->{body}{sessionId} // '') eq $session
                  && (!$type || $_->{body}{type} eq $type)
                  && !$seen{ $_->{id} }++ } @req;
}

sub wait_event
{
    my ($session, $type, $n, $timeout) = @_;
    my @r = $node->wait_requests(
        sub { events($session, $type, @_) >= ($n // 1) }, $timeout // 15);
    return events($session, $type, @r);
}

sub log_count
{
    my ($re) = @_;
    my @m = $t->error_log =~ /$re/g;
    return scalar @m;
}

# A marker session that opens (and, with $leave, closes) now: Express gets
# events in queue order, so once the marker's arrive, everything queued
# before them has arrived too.  A leave is queued when its grace period
# ends: the marker's ends after any started before it.
my $MARK = 0;

sub marker
{
    my (%opt) = @_;
    my $m = 'marker' . ++$MARK;
    my $s = open_stream($m);
    return 0 unless wait_event($m, 'session_opened');
    return 1 unless $opt{leave};
    $s->close;
    return scalar wait_event($m, 'session_closed', 1, $GRACE + 15);
}


# ----- join: once, on the first stream ---------------------------------------

my $a1 = open_stream('a');
my ($join) = wait_event('a', 'session_opened');

ok($join, 'the first stream of a session POSTs session_opened');
is($join->{body}{streams}, 1, 'it says 1 stream');
is($join->{body}{sessionId}, 'a', 'it names the session');
like($join->{body}{timestamp}, qr/^\d{13}$/, 'with a time in milliseconds');
ok($join->{verified}, 'standardwebhooks verifies its signature');
like($join->{id}, qr/^presence-[0-9a-f]{16}-\d+$/,
     'webhook-id: presence-<zone nonce>-<n>');
is_deeply([ sort keys %{ $join->{body} } ],
          [ qw(sessionId streams timestamp type) ],
          'the body is {"type","sessionId","streams","timestamp"}');

my @a = ($a1);
my %pids = ($a1->{pid} => 1);

for (1 .. 40) {
    my $s = open_stream('a');
    push @a, $s;
    $pids{ $s->{pid} } = 1;
    last if keys %pids == 2 && @a >= 3;
}
is(scalar keys %pids, 2, 'session a has streams on both workers');

ok(marker(), 'a later join arrived');
is(scalar events('a'), 1, 'more streams of the session POST nothing more');

# ----- leave: after the last stream and the grace period ---------------------

shift(@a)->close while @a > 1;

ok(marker(leave => 1), 'a later session opened and closed');
is(scalar events('a', 'session_closed'), 0,
   'no leave while a stream of the session is open');

my $t_close = time;
$a[0]->close;

my ($leave) = wait_event('a', 'session_closed', 1, $GRACE + 15);
ok($leave, 'the last stream gone, session_closed is POSTed');
cmp_ok($leave && $leave->{t}, '>=', $t_close + $GRACE - 0.01,
       'only once the grace period is over');
cmp_ok($leave && $leave->{body}{timestamp}, '>=',
       int(($t_close + $GRACE) * 1000) - 10,
       'its timestamp is the end of the grace period');
is($leave && $leave->{body}{streams}, 0, 'it says 0 streams');
ok($leave && $leave->{verified}, 'standardwebhooks verifies its signature');
isnt($leave && $leave->{id}, $join->{id}, 'its webhook-id is its own');

ok(marker(leave => 1), 'a later session opened and closed');
is(scalar events('a', 'session_closed'), 1, 'one leave');
is(log_count(qr/session "a" closed/), 1, 'the zone closed it once');

# ----- a reconnect within the grace period -----------------------------------

my $b = open_stream('b');
ok(wait_event('b', 'session_opened'), 'session b opened');
$b->close;
$b = open_stream('b');

ok(marker(leave => 1), 'a session opened and closed after b came back');
is(scalar events('b'), 1,
   'a stream back within the grace period POSTs neither leave nor join');
is(log_count(qr/session "b" closed/), 0, 'the zone did not close b');

$b->close;
ok(wait_event('b', 'session_closed', 1, $GRACE + 15),
   'b closes after the grace period of its last stream');

# webhook_presence_grace off: the leave comes as the last stream ends

my $g = open_stream('g', '/nograce');
ok(wait_event('g', 'session_opened'), 'grace off: the join');
$g->close;
ok(wait_event('g', 'session_closed', 1, 10), 'grace off: the leave');

# ----- the same event to each URL, retried under its webhook-id --------------

my @mine = grep { ($_->{body}{sessionId} // '') eq 'a' } $py->wait_requests(
    sub { grep({ ($_->{body}{sessionId} // '') eq 'a' } @_) >= 4 }, 15);

my %by_id;
push @{ $by_id{ $_->{id} } }, $_ for @mine;

is_deeply([ sort keys %by_id ], [ sort $join->{id}, $leave->{id} ],
          'Flask got the same two events under the same webhook-ids');
is_deeply([ map { scalar @{ $by_id{$_} } } sort keys %by_id ], [ 2, 2 ],
          'each twice: the 503 was retried');
is_deeply([ map { $_->{verified} ? 1 : 0 } @mine ], [ 1, 1, 1, 1 ],
          'Python hmac verifies every attempt');
is_deeply([ map { $_->{answer} } @{ $by_id{ $join->{id} } } ],
          [ '503', '200' ], 'a 503, then the retry delivered it');
is($by_id{ $join->{id} }[1]{raw}, $join->{raw},
   'the retry and the other URL carry the same body');

# ----- a worker killed with -9 -----------------------------------------------

# k: a stream on each worker; k2: only on the victim, back within the
# grace period; k3: only on the victim, not back

sub streams_on
{
    my ($session, $pid) = @_;
    my (@keep, @other);
    for (1 .. 60) {
        my $s = open_stream($session);
        if ($s->{pid} eq $pid) { push @keep, $s; last }
        push @other, $s;
    }
    $_->close for @other;
    return @keep;
}

my @k;
my %kby;
for (1 .. 60) {
    my $s = open_stream('k');
    push @k, $s;
    $kby{ $s->{pid} } = 1;
    last if keys %kby == 2;
}
is(scalar keys %kby, 2, 'session k is held by both workers');

my $victim = $k[0]{pid};
my @k2 = streams_on('k2', $victim);
my @k3 = streams_on('k3', $victim);
is(scalar(@k2) + scalar(@k3), 2, 'k2 and k3 are held by the victim only');

ok(wait_event('k2', 'session_opened') && wait_event('k3', 'session_opened'),
   'k2 and k3 opened');

$t->expect_log(qr/\[alert\].*worker process $victim exited on signal 9/);
kill 'KILL', $victim;

ok($_->is_closed(10), 'the killed worker\'s stream ended')
    for grep({ $_->{pid} eq $victim } @k), @k2, @k3;

my @k2_back = map { open_stream('k2') } @k2;

ok(wait_event('k3', 'session_closed', 1, $GRACE + 20),
   'a session only the killed worker had: leave after the grace period');

ok(marker(leave => 1), 'a session opened and closed after that');
is(scalar events('k3', 'session_closed'), 1, 'exactly one leave for it');
is(scalar events('k2'), 1, 'the one back within the grace period: no '
   . 'leave, no second join');
is(scalar events('k'), 1,
   'the one with a stream on the other worker: nothing');

$_->close for @k, @k2_back;
ok(wait_event('k', 'session_closed', 1, $GRACE + 15)
   && wait_event('k2', 'session_closed', 1, $GRACE + 15),
   'k and k2 leave once their streams are gone');

# ----- reload ----------------------------------------------------------------

my @r = map { open_stream('r') } 1 .. 3;
my @r2 = (open_stream('r2'));
ok(wait_event('r', 'session_opened') && wait_event('r2', 'session_opened'),
   'r and r2 opened');

$t->reload;

ok($_->is_closed(10), 'reload ends the old worker\'s stream') for @r, @r2;

my @r_back = map { open_stream('r') } @r;

ok(wait_event('r2', 'session_closed', 1, $GRACE + 15),
   'a session not back after the reload: leave after the grace period');
ok(marker(leave => 1), 'a session opened and closed after that');
is(scalar events('r2', 'session_closed'), 1, 'one leave for it');
is(scalar events('r'), 1,
   'the session back within the grace period: no leave, no second join');

$_->close for @r_back;
ok(wait_event('r', 'session_closed', 1, $GRACE + 15), 'then r leaves');

# ----- every event: signed, and its own webhook-id ---------------------------

my @all = $node->requests;
is(scalar(grep { !$_->{verified} } @all), 0,
   'standardwebhooks verified all ' . scalar(@all) . ' requests');
my %bodies;
$bodies{ $_->{id} }{ $_->{raw} } = 1 for @all;
is(scalar(grep { keys %{ $bodies{$_} } > 1 } keys %bodies), 0,
   'each event has its own webhook-id (' . scalar(keys %bodies)
   . ' events)');

$t->stop;

# ----- configuration errors --------------------------------------------------

for my $case (
    [ 'webhook_presence_forward other http://127.0.0.1:9/p;',
      qr/no webhook_zone "other"/, 'an unknown zone' ],
    [ 'webhook_presence_forward chat http://127.0.0.1:9/$host;',
      qr/without variables/, 'a URL with variables' ],
    [ 'webhook_presence_forward chat ftp://127.0.0.1/p;',
      qr/absolute http/, 'a URL that is not http(s)' ],
    [ 'webhook_presence_forward chat http://127.0.0.1:9/p format=event;',
      qr/invalid parameter "format=event"/, 'an unknown parameter' ],
    [ 'webhook_presence_forward chat http://127.0.0.1:9/p secret=whsec_;',
      qr/base64/, 'an empty whsec_ secret' ],
    [ 'webhook_presence_forward chat http://127.0.0.1:9/p '
      . 'secret=env=NO_SUCH_VAR_P;',
      qr/NO_SUCH_VAR_P/, 'a secret from a missing variable' ],
    [ join('', map { "webhook_presence_forward chat http://127.0.0.1:9/$_;" }
                   1 .. 17),
      qr/more than 16 URLs/, '17 URLs' ],
)
{
    my ($conf, $re, $name) = @$case;
    my $bad = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                    http => <<"CONF");
    webhook_zone zone=chat:1m;
    $conf
    server { listen 127.0.0.1:%%PORT%%; location = /s { webhook_stream chat; } }
CONF
    my ($ok, $out) = $bad->test_config;
    ok(!$ok, "nginx -t refuses $name");
    like($out, $re, "and says why ($name)");
}

my $in_server = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                      http => <<"CONF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        webhook_presence_forward chat http://127.0.0.1:9/p;
    }
CONF
my ($ok, $out) = $in_server->test_config;
ok(!$ok && $out =~ /not allowed here/,
   'nginx -t refuses it outside the http block');

finish();
