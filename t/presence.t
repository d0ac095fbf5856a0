#!/usr/bin/perl

# Presence (webhook_presence) with real streams on 2 workers: the count of
# a session's open streams and the open time of the oldest are exact as
# streams open and close, after a worker is killed with -9 and after a
# reload; sessions open at 0 -> 1 stream and close only after the grace
# period (webhook_presence_grace), so that a reconnect within it is
# neither; the first stream of a session gets "session_opened"
# (webhook_presence_events).  The location is guarded by webhook_secret.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $SECRET = 's3cret';
my $GRACE = 4;

my $t = WebhookSSE::Test->new(workers => 2, http => <<"EOF");
    webhook_zone zone=chat:1m history=100;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /pub {
            webhook_publish chat;
            webhook_secret $SECRET;
        }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_presence_events on;
            webhook_presence_grace ${GRACE}s;
            add_header X-Worker \$pid always;
        }

        location = /nograce {
            webhook_stream chat;
            webhook_replay 0;
            webhook_presence_events on;
            webhook_presence_grace off;
        }

        location = /presence {
            webhook_presence chat;
            webhook_secret $SECRET;
        }
    }
EOF
$t->start;


# a stream with when it was opened (a time range) and which worker has it

sub open_stream
{
    my ($session, %opt) = @_;
    my $t0 = time;
    my $s = $t->sse("/stream?sessionId=$session", %opt);
    my @ev = $s->wait_events(1, 5);
    die "no connected event on a stream of $session\n"
        unless @ev && $ev[0]{json}{type} eq 'connected';
    $s->{t0} = $t0;
    $s->{t1} = time;
    $s->{pid} = $s->{headers}{'x-worker'};
    return $s;
}

sub presence
{
    my ($session) = @_;
    my $r = $t->request('GET', "/presence?sessionId=$session",
                        headers => { 'X-Webhook-Secret' => $SECRET });
    die "presence of $session: $r->{status} $r->{body}\n"
        unless $r->{status} == 200 && $r->{json};
    return $r->{json};
}

sub streams_become
{
    my ($session, $n, $timeout) = @_;
    return WebhookSSE::Test::wait_until(
        sub { presence($session)->{streams} == $n }, $timeout // 10);
}

# "since" is within the time the stream took to open (milliseconds)
sub opened_during
{
    my ($since, $s) = @_;
    return defined $since && $since >= int($s->{t0} * 1000) - 1
           && $since <= int($s->{t1} * 1000) + 1;
}

# the events a stream gets up to a message published now: none of them a
# "session_opened"
sub no_opened_event
{
    my ($s, $session) = @_;
    my $id = $t->publish_ok('/pub', { message => 'marker',
                                      sessionId => $session },
                            secret => $SECRET);
    my @ev = $s->wait_for_event($id, 5);
    return @ev && !grep { ($_->{json}{type} // '') eq 'session_opened' } @ev;
}

sub log_count
{
    my ($re) = @_;
    my @m = $t->error_log =~ /$re/g;
    return scalar @m;
}

# streams of a session until each worker has at least $min of them
sub spread
{
    my ($session, $min) = @_;
    my (@s, %by);
    for (1 .. 60) {
        my $s = open_stream($session);
        push @s, $s;
        push @{ $by{ $s->{pid} } }, $s;
        last if keys %by == 2 && !grep { @$_ < $min } values %by;
    }
    return (\@s, \%by);
}


# ----- counts and since across workers ---------------------------------------

my ($a, $by) = spread('a', 2);
my @a = @$a;

is(scalar keys %$by, 2, 'the streams of session a are held by both workers');

my $p = presence('a');
is($p->{sessionId}, 'a', 'presence names the session');
is($p->{streams}, scalar @a, 'presence counts every stream of both workers');
ok(opened_during($p->{since}, $a[0]),
   'since is when the oldest stream opened')
    or diag("since $p->{since}, opened $a[0]{t0} .. $a[0]{t1}");

my @ev = $a[0]->wait_events(1, 5);
is($ev[0]{json}{type}, 'session_opened',
   'the first stream of the session gets session_opened');
is($ev[0]{json}{streams}, 1, 'session_opened says 1 stream');
is($ev[0]{json}{sessionId}, 'a', 'session_opened names the session');
ok($ev[0]{json}{timestamp} && opened_during($ev[0]{json}{timestamp}, $a[0]),
   'session_opened has the time it opened');
ok(no_opened_event($a[1], 'a'), 'a second stream gets no session_opened');

# the oldest ones go first: since follows the oldest left

while (@a > 1) {
    my $gone = shift @a;
    $gone->close;
    ok(streams_become('a', scalar @a), 'closing a stream: ' . @a . ' left');
    $p = presence('a');
    ok(opened_during($p->{since}, $a[0]),
       'since moves to the oldest stream left')
        or diag("since $p->{since}, opened $a[0]{t0} .. $a[0]{t1}");
}

# the newest one of a worker goes, the others stay the oldest
my $newest = open_stream('a');
push @a, $newest;
$newest->close;
pop @a;
ok(streams_become('a', 1), 'closing the newest: 1 left');
ok(opened_during(presence('a')->{since}, $a[0]),
   'since stays with the oldest when a newer stream closes');

shift(@a)->close;
ok(streams_become('a', 0), 'all streams closed: 0');
is(presence('a')->{since}, undef, 'since is null without streams');

# ----- the grace period ------------------------------------------------------

my $back = open_stream('a');
ok(no_opened_event($back, 'a'),
   'a stream back within the grace period opens nothing');
is(log_count(qr/session "a" closed/), 0, 'and closed nothing');
$back->close;

ok(WebhookSSE::Test::wait_until(
       sub { log_count(qr/session "a" closed/) == 1 }, $GRACE + 15),
   'the session closes once the grace period passes without a stream');
is(log_count(qr/session "a" opened/), 1, 'it opened once');

my $again = open_stream('a');
@ev = $again->wait_events(1, 5);
is($ev[0]{json}{type}, 'session_opened', 'after it, a stream opens it again');
$again->close;

# without a grace period a session closes as its last stream ends

my $g = $t->sse('/nograce?sessionId=g');
@ev = $g->wait_events(2, 5);
is($ev[1] && $ev[1]{json}{type}, 'session_opened',
   'webhook_presence_grace off: the first stream opens the session');
$g->close;
ok(WebhookSSE::Test::wait_until(
       sub { log_count(qr/session "g" closed/) == 1 }, 10),
   'webhook_presence_grace off: it closes when its stream ends');
$g = $t->sse('/nograce?sessionId=g');
@ev = $g->wait_events(2, 5);
is($ev[1] && $ev[1]{json}{type}, 'session_opened',
   'webhook_presence_grace off: the next stream opens it again');
$g->close;

# ----- the POST form and the guard -------------------------------------------

my @b = map { open_stream('b') } 1 .. 3;
ok(streams_become('b', 3), 'session b has 3 streams');

my $r = $t->request('POST', '/presence',
                    headers => { 'X-Webhook-Secret' => $SECRET,
                                 'Content-Type' => 'application/json' },
                    body => '{"sessionIds":["b","nobody","b"]}');
is($r->{status}, 200, 'POST answers many sessions');
is_deeply([ map { [ $_->{sessionId}, $_->{streams} ] }
            @{ $r->{json}{sessions} } ],
          [ [ 'b', 3 ], [ 'nobody', 0 ], [ 'b', 3 ] ],
          'each in the order asked');
ok(opened_during($r->{json}{sessions}[0]{since}, $b[0]),
   'with since of the oldest');
is($r->{json}{sessions}[1]{since}, undef, 'null for a session without one');

$_->close for @b;

my %bad = (
    'GET without the secret' =>
        [ 'GET', '/presence?sessionId=b', {}, undef, 401 ],
    'GET with a wrong secret' =>
        [ 'GET', '/presence?sessionId=b', { 'X-Webhook-Secret' => 'no' },
          undef, 401 ],
    'POST without the secret' =>
        [ 'POST', '/presence', { 'Content-Type' => 'application/json' },
          '{"sessionIds":["b"]}', 401 ],
    'GET without a session' =>
        [ 'GET', '/presence', { 'X-Webhook-Secret' => $SECRET }, undef, 400 ],
    'POST of invalid JSON' =>
        [ 'POST', '/presence', { 'X-Webhook-Secret' => $SECRET },
          '{"sessionIds":[', 400 ],
    'POST without sessionIds' =>
        [ 'POST', '/presence', { 'X-Webhook-Secret' => $SECRET },
          '{"ids":["b"]}', 400 ],
    'POST of a number for a session' =>
        [ 'POST', '/presence', { 'X-Webhook-Secret' => $SECRET },
          '{"sessionIds":["b",1]}', 400 ],
    'POST of 101 sessions' =>
        [ 'POST', '/presence', { 'X-Webhook-Secret' => $SECRET },
          WebhookSSE::Test::json_encode(
              { sessionIds => [ map { "s$_" } 1 .. 101 ] }), 400 ],
    'DELETE' =>
        [ 'DELETE', '/presence', { 'X-Webhook-Secret' => $SECRET },
          undef, 405 ],
);

for my $name (sort keys %bad) {
    my ($method, $path, $h, $body, $status) = @{ $bad{$name} };
    $r = $t->request($method, $path, headers => $h,
                     defined $body ? (body => $body) : ());
    is($r->{status}, $status, "$name: $status");
    is($r->{json} && $r->{json}{success}, 0, "$name: a JSON error")
        or diag($r->{body});
}

$r = $t->request('POST', '/presence',
                 headers => { 'X-Webhook-Secret' => $SECRET },
                 body => WebhookSSE::Test::json_encode(
                     { sessionIds => [ map { "s$_" } 1 .. 100 ] }));
is(scalar @{ $r->{json}{sessions} // [] }, 100, 'POST of 100 sessions');

# ----- a worker killed with -9 -----------------------------------------------

# session k: streams on both workers; k2: only on the worker to be killed,
# reconnected within the grace period; k3: only there, not reconnected

my ($k, $kby) = spread('k', 1);
my @workers = sort keys %$kby;
is(scalar @workers, 2, 'session k is held by both workers');

my $victim = $k->[0]{pid};
my @k_survivors = grep { $_->{pid} ne $victim } @$k;
my @k_lost = grep { $_->{pid} eq $victim } @$k;

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

my @k2 = streams_on('k2', $victim);
my @k3 = streams_on('k3', $victim);
is(scalar(@k2) + scalar(@k3), 2, 'sessions k2 and k3 are held by one worker');
ok(streams_become('k2', 1) && streams_become('k3', 1),
   'k2 and k3 have a stream each');

my $opened_k2 = log_count(qr/session "k2" opened/);

$t->expect_log(qr/\[alert\].*worker process $victim exited on signal 9/);
kill 'KILL', $victim;

ok($_->is_closed(10), 'the killed worker\'s stream ended')
    for @k_lost, @k2, @k3;

my @k2_back = map { open_stream('k2') } @k2;

ok(streams_become('k', scalar @k_survivors, 15),
   'presence counts the other worker\'s streams only, once the killed '
   . 'worker\'s slot is reclaimed');
ok(opened_during(presence('k')->{since}, $k_survivors[0]),
   'since is the oldest stream left alive')
    or diag(presence('k')->{since});

ok(no_opened_event($k2_back[0], 'k2'),
   'a stream back within the grace period after kill -9 opens nothing');

ok(WebhookSSE::Test::wait_until(
       sub { log_count(qr/session "k3" closed/) == 1 }, $GRACE + 15),
   'a session only the killed worker had closes after the grace period');
is(log_count(qr/session "k2" closed/), 0,
   'the one that came back within it does not');
is(log_count(qr/session "k2" opened/), $opened_k2, 'nor opens again');
is(presence('k2')->{streams}, 1, 'k2 counts its stream');

my @k_back = map { open_stream('k') } @k_lost;
ok(streams_become('k', @k_survivors + @k_back), 'k counts its streams back');

$_->close for @k_survivors, @k_back, @k2_back;
ok(streams_become('k', 0) && streams_become('k2', 0), 'k and k2: 0 left');

# ----- reload ----------------------------------------------------------------

my @r = map { open_stream('r') } 1 .. 3;
my @r2 = (open_stream('r2'));
ok(streams_become('r', 3), 'session r has 3 streams');

my $opened_r = log_count(qr/session "r" opened/);

$t->reload;

ok($_->is_closed(10), 'reload ends the old worker\'s stream') for @r, @r2;

my @r_back = map { open_stream('r') } @r;

ok(streams_become('r', 3), 'the streams back after the reload are counted');
ok(opened_during(presence('r')->{since}, $r_back[0]),
   'since is the oldest of them');

ok(no_opened_event($r_back[0], 'r'),
   'a stream back within the grace period after a reload opens nothing');

ok(WebhookSSE::Test::wait_until(
       sub { log_count(qr/session "r2" closed/) == 1 }, $GRACE + 15),
   'a session not back after the reload closes after the grace period');
is(log_count(qr/session "r" closed/), 0, 'the one back does not');
is(log_count(qr/session "r" opened/), $opened_r, 'nor opens again');

$_->close for @r_back;
ok(streams_become('r', 0), 'r: 0 left');

$t->stop;

finish();
