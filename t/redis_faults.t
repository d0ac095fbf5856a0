#!/usr/bin/perl

# webhook_redis when Redis misbehaves: configuration mistakes are refused
# at start (rediss://, a password in the URL, no zone); a Redis refusing
# the password, out of memory (maxmemory) or answering slowly (a delaying
# proxy) gets publishes answered 503 with a clear error and a clear log
# line, streams stay open, nothing crashes, and all is well once it is.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $redis = WebhookSSE::Redis->new(password => 'right-pass')->start;
my $port = $redis->port;

sub http
{
    my ($redis_line) = @_;
    return <<"EOF";
    webhook_zone zone=chat:1m;
    $redis_line

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_heartbeat 1s;
                             webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF
}

# ---- configuration ---------------------------------------------------------

for my $case (
    [ "webhook_redis chat rediss://127.0.0.1:$port;", qr/TLS.*not supported/,
      'rediss:// is refused: no TLS in hiredis 0.14' ],
    [ "webhook_redis chat redis://:pw\@127.0.0.1:$port;",
      qr/password=/, 'a password in the URL is refused' ],
    [ "webhook_redis other redis://127.0.0.1:$port;",
      qr/no webhook_zone "other"/, 'an unknown zone is refused' ],
    [ "webhook_redis chat http://127.0.0.1:$port;",
      qr/invalid URL/, 'another scheme is refused' ],
    [ "webhook_redis chat redis://127.0.0.1:$port/x;",
      qr/invalid database/, 'a bad database number is refused' ],
    [ "webhook_redis chat redis://127.0.0.1:$port log=5;",
      qr/invalid log/, 'a tiny log is refused' ],
    [ "webhook_redis chat redis://127.0.0.1:$port;\n"
      . "    webhook_redis chat redis://127.0.0.1:$port;",
      qr/already has a Redis link/, 'one link per zone' ],
)
{
    my ($line, $re, $name) = @$case;
    my ($ok, $out) = WebhookSSE::Test->new(http => http($line),
                                           expect_log => [$re])->test_config;
    ok(!$ok && $out =~ $re, $name) or diag $out;
}

# ---- the password refused --------------------------------------------------

my $wrong = WebhookSSE::Test->new(
    http => http("webhook_redis chat redis://127.0.0.1:$port "
                 . "password=wrong-pass prefix=f:;"),
)->start;

ok($wrong->wait_error_log(qr/\[error\].*webhook redis.*(WRONGPASS|invalid)/,
                          10),
   'wrong password: an error line says why');

my $r = $wrong->publish('/pub', { message => 'x' });
is($r->{status}, 503, 'wrong password: publish 503');
like($r->{json}{error}, qr/Redis is not reachable/,
     'wrong password: a clear error');

my $s = $wrong->sse('/stream?sessionId=a');
ok($s->is_closed(5), 'wrong password: a stream is told to come back later');
like(join('', map { $_ } @{ $s->{retry} }), qr/\d/, 'with a retry');

# retries back off: one error line, not one per attempt or request
$wrong->publish('/pub', { message => 'x' }) for 1 .. 3;
my $lines = () = $wrong->error_log =~ /\[error\][^\n]*webhook redis/g;
is($lines, 1, 'wrong password: one error line');

$wrong->stop;

# ---- the password from the environment; Redis out of memory ----------------

my $good = WebhookSSE::Test->new(
    http => http("webhook_redis chat redis://127.0.0.1:$port "
                 . "password=env=TEST_REDIS_PW prefix=f:;"),
    main => 'env TEST_REDIS_PW;',
    env => { TEST_REDIS_PW => 'right-pass' },
)->start;

ok($good->wait_error_log(qr/in sync with the cluster/, 15),
   'password from the environment: in sync');

my $sg = $good->sse('/stream?sessionId=a');
$sg->wait_events(1, 5);

my $id1 = $good->publish_ok('/pub', { message => 'one', sessionId => 'a' });

$redis->cli('CONFIG', 'SET', 'maxmemory', '1');

$r = $good->publish('/pub', { message => 'oom', sessionId => 'a' });
is($r->{status}, 503, 'Redis out of memory: publish 503');
like($r->{json}{error}, qr/out of memory/, 'Redis out of memory: said so');
ok($good->wait_error_log(qr/out of memory \(maxmemory\)/, 5),
   'Redis out of memory: logged');

1 while defined $sg->wait_comment(0);
ok(defined $sg->wait_comment(5), 'Redis out of memory: heartbeats go on');

$good->publish('/pub', { message => 'oom again', sessionId => 'a' })
    for 1 .. 3;
my $oom = () = $good->error_log =~ /\[warn\][^\n]*out of memory \(maxmemory\)/g;
ok($oom >= 1 && $oom <= 2,
   'Redis out of memory: one warning per worker, not one per publish');

$redis->cli('CONFIG', 'SET', 'maxmemory', '0');

my $id2 = $good->publish_ok('/pub', { message => 'two', sessionId => 'a' });
my @ev = $sg->wait_for_event($id2, 10);
is_deeply([map { $_->{json}{message} } @ev], ['one', 'two'],
          'memory back: the stream got what was acknowledged, not the '
          . 'refused one');

# what no zone could keep is refused before Redis, as on one host
$r = $good->publish('/pub', { message => 'x' x 300000, sessionId => 'a' });
is($r->{status}, 503, 'a message over a quarter of the zone: 503');
like($r->{json}{error}, qr/zone cannot store/, 'said so');

# ---- a slow Redis ----------------------------------------------------------

my $flag = $good->dir . '/slow';
my ($proxy_port, $proxy_pid) = delaying_proxy($port, $flag, 1.5);

my $slow = WebhookSSE::Test->new(
    http => http("webhook_redis chat redis://127.0.0.1:$proxy_port "
                 . "password=right-pass prefix=f: timeout=300ms;"),
)->start;

ok($slow->wait_error_log(qr/in sync with the cluster/, 15),
   'through the proxy: in sync');

my $ss = $slow->sse('/stream?sessionId=a');
$ss->wait_events(1, 5);

open my $fh, '>', $flag or die "$flag: $!";
close $fh;

my $start = time;
$r = $slow->publish('/pub', { message => 'slow', sessionId => 'a' });
my $took = time - $start;

is($r->{status}, 503, 'slow Redis: 503');
like($r->{json}{error}, qr/did not answer in time/,
     'slow Redis: the error says so');
cmp_ok($took, '<', 1.2, 'slow Redis: answered within the timeout');

$slow->publish('/pub', { message => 'slow', sessionId => 'a' }) for 1 .. 3;
my $late = () = $slow->error_log =~ /\[warn\][^\n]*no reply to a publish/g;
ok($late >= 1 && $late <= 2,
   'slow Redis: one warning per worker, not one per publish');

unlink $flag;

my $id3;
ok(wait_until(sub {
       my $p = $slow->publish('/pub', { message => 'fast', sessionId => 'a' });
       $id3 = $p->{json}{messageId} if $p->{status} == 200;
       $id3;
   }, 10), 'Redis fast again: publishes succeed');

@ev = $ss->wait_for_event($id3, 10);
ok(@ev, 'Redis fast again: the stream gets the message');
ok(!grep({ ($_->{json}{message} // '') ne 'fast'
           && ($_->{json}{message} // '') ne 'slow' } @ev),
   'and nothing else');

kill 'TERM', $proxy_pid;
waitpid $proxy_pid, 0;

WebhookSSE::SSE->close_all;
finish();


# A TCP proxy to Redis that holds Redis's replies back for $delay seconds
# while $flag exists (order kept).

sub delaying_proxy
{
    my ($to, $flag, $delay) = @_;

    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 16, ReuseAddr => 1)
        or die "proxy: $!";
    my $lport = $l->sockport;

    my $pid = fork // die "fork: $!";
    return ($lport, $pid) if $pid;

    # the child ends by the default TERM: none of the parent's handlers
    # and END blocks (which stop servers) run in it
    $SIG{TERM} = $SIG{INT} = 'DEFAULT';

    my $sel = IO::Select->new($l);
    my (%peer, %from_redis, @queue);

    while (1) {
        my $wait = @queue ? $queue[0][0] - time : 1;
        $wait = 0 if $wait < 0;

        for my $h ($sel->can_read($wait)) {
            if ($h == $l) {
                my $c = $l->accept or next;
                my $u = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $to)
                    or do { close $c; next };
                $peer{$c} = $u;
                $peer{$u} = $c;
                $from_redis{$u} = 1;
                $sel->add($c, $u);
                next;
            }

            my $n = sysread $h, my $buf, 65536;

            if (!$n) {
                my $p = delete $peer{$h};
                $sel->remove($h, $p ? $p : ());
                close $h;
                if ($p) { delete $peer{$p}; close $p }
                next;
            }

            my $due = ($from_redis{$h} && -e $flag) ? time + $delay : time;
            if (@queue || $due > time) {
                push @queue, [ $due, $peer{$h}, $buf ];
            } else {
                syswrite $peer{$h}, $buf;
            }
        }

        while (@queue && $queue[0][0] <= time) {
            my $q = shift @queue;
            syswrite $q->[1], $q->[2] if $q->[1] && defined fileno $q->[1];
        }
    }
}
