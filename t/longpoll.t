#!/usr/bin/perl

# A stream location read by long-polling: the choice of transport
# (?transport=longpoll, Accept), the answer at once when there are events,
# a held request answered by the next delivery or by
# webhook_longpoll_timeout with [], exact counts while held, a client loop
# against a concurrent publisher and across a reload without loss, gap or
# duplicate, and webhook_stream_transports.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use POSIX ();
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=1000;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 3; }
        location = /short  {
            webhook_stream chat;
            webhook_longpoll_timeout 1s;
        }
        location = /no-lp  {
            webhook_stream chat;
            webhook_stream_transports sse websocket;
        }
    }
EOF

my $port = $t->port;

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : -1;
}

# a long-poll sent now, its answer read later

sub poll_start
{
    my ($path, %h) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "$_: $h{$_}\r\n" for keys %h;
    print $s "$req\r\n";
    return { sock => $s, data => '' };
}

sub poll_finish
{
    my ($p, $timeout) = @_;
    my $sel = IO::Select->new($p->{sock});
    my $deadline = time + $timeout;

    while (1) {
        my $res = WebhookSSE::Test::_parse_response($p->{data});
        if ($res && $res->{complete}) {
            $res->{json} = json_decode($res->{body});
            return $res;
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $p->{sock}, $p->{data}, 65536, length $p->{data};
        return undef unless $n;
    }
}

sub ids { [ map { $_->{messageId} } @{ $_[0] // [] } ] }

# ----- at once ------------------------------------------------------------

my @pub = map { $t->publish_ok('/pub', { message => "m$_",
                                          sessionId => 'l1' }) } 1 .. 5;

my $r = $t->request('GET', '/stream?sessionId=l1&transport=longpoll');
is($r->{status}, 200, 'long-poll: 200');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
is_deeply(ids($r->{json}), [ @pub[2 .. 4] ],
          'without lastEventId: the newest webhook_replay events at once');
is($r->{json}[0]{message}, 'm3', 'the objects of the SSE data lines');
is($r->{json}[0]{type}, 'webhook_message', 'no connected event, messages');

$r = $t->request('GET', "/stream?sessionId=l1&lastEventId=$pub[0]",
                 headers => { Accept => 'application/json' });
is_deeply(ids($r->{json}), [ @pub[1 .. 4] ],
          'Accept: application/json and lastEventId: the events after it');

$r = $t->request('GET', '/stream?sessionId=l1&transport=longpoll',
                 headers => { 'Last-Event-ID' => $pub[3] });
is_deeply(ids($r->{json}), [ $pub[4] ], 'Last-Event-ID works as well');

# ----- the others stay SSE ------------------------------------------------

my $s = $t->sse('/stream?sessionId=l1',
                headers => { Accept => 'text/event-stream, application/json' });
is($s->{status}, 200, 'Accept with text/event-stream: SSE');
like($s->{headers}{'content-type'} // '', qr{^text/event-stream},
     'an event stream');
$s->close;

$s = $t->sse('/stream?sessionId=l1');
like($s->{headers}{'content-type'} // '', qr{^text/event-stream},
     'a GET without Accept: SSE');
$s->close;

# ----- held ---------------------------------------------------------------

ok(wait_until(sub { active() == 0 }, 10), 'no stream open');

my $p = poll_start("/stream?sessionId=l1&transport=longpoll"
                   . "&lastEventId=$pub[4]");
ok(wait_until(sub { active() == 1 }, 10),
   'a held long-poll counts in activeConnections');
ok(!poll_finish($p, 0.3), 'nothing after lastEventId: the request waits');

my $id = $t->publish_ok('/pub', { message => 'new', sessionId => 'l1' });
my $res = poll_finish($p, 10);
ok($res, 'a publish answers the held request');
is_deeply(ids($res && $res->{json}), [$id], 'with the new event');
ok(wait_until(sub { active() == 0 }, 10), 'answered: no longer counted');

my $bp = poll_start("/stream?sessionId=l9&transport=longpoll",
                   Accept => 'application/json');
ok(wait_until(sub { active() == 1 }, 10), 'a fresh session waits');
my $bid = $t->publish_ok('/pub', { message => 'to all' });
$res = poll_finish($bp, 10);
is_deeply(ids($res && $res->{json}), [$bid], 'broadcasts reach long-polls');

my $start = time;
$p = poll_start("/short?sessionId=quiet&transport=longpoll"
                . "&lastEventId=$bid");
$res = poll_finish($p, 10);
ok($res, 'webhook_longpoll_timeout answers');
is($res && $res->{status}, 200, 'with 200');
is($res && $res->{body}, '[]', 'and an empty array');
ok(time - $start >= 0.9, 'after the timeout, not before');
ok(wait_until(sub { active() == 0 }, 10), 'counts exact after a timeout');

# a client that leaves while held
$p = poll_start("/stream?sessionId=gone&transport=longpoll"
                . "&lastEventId=$bid");
ok(wait_until(sub { active() == 1 }, 10), 'held');
close $p->{sock};
ok(wait_until(sub { active() == 0 }, 10), 'a client that left is let go');

# ----- transports ---------------------------------------------------------

$r = $t->request('GET', '/no-lp?sessionId=x&transport=longpoll');
is($r->{status}, 400, 'long-poll off: 400');
like($r->{json}{error} // '', qr/long-polling is not enabled/,
     'with a JSON error naming the cause');

# ----- a client loop against a publisher, across a reload ----------------

sub poll_loop
{
    my ($session, $after, $want, $timeout, $during) = @_;
    my @got;
    my $deadline = time + $timeout;
    my $polls = 0;

    while (@got < $want && time < $deadline) {
        my $q = "/stream?sessionId=$session&transport=longpoll";
        $q .= "&lastEventId=$after" if defined $after;
        my $pp = poll_start($q);
        $during->($polls) if $during;
        my $rr = poll_finish($pp, 40);
        $polls++;
        next unless $rr && $rr->{status} == 200 && $rr->{json};
        for my $e (@{ $rr->{json} }) {
            push @got, $e->{messageId};
            $after = $e->{messageId};
        }
    }
    return (\@got, $polls);
}

my $mark = $t->publish_ok('/pub', { message => 'mark', sessionId => 'loop' });

my $child = fork // die "fork: $!";
if ($child == 0) {
    for my $i (1 .. 300) {
        $t->publish_ok('/pub', { message => "c$i", sessionId => 'loop' });
    }
    POSIX::_exit(0);
}

my ($got, $polls) = poll_loop('loop', $mark, 300, 60);
waitpid $child, 0;
is($?, 0, 'the publisher published 300 messages');
is(scalar @$got, 300, "a long-poll loop got all 300 ($polls polls)");
my %seen;
is(scalar(grep { $seen{$_}++ } @$got), 0, 'none twice');
my @seqs = map { (id_parts($_))[1] } @$got;
is_deeply(\@seqs, [ sort { $a <=> $b } @seqs ], 'in publish order');

# a request held on an old worker when it goes: answered, then the loop
# goes on with the new workers

my $last = $got->[-1];
$p = poll_start("/stream?sessionId=loop&transport=longpoll"
                . "&lastEventId=$last");
ok(wait_until(sub { active() == 1 }, 10), 'held before the reload');
$t->reload;
$res = poll_finish($p, 10);
is($res && $res->{status}, 200, 'answered by the old worker on its way out');
is($res && $res->{body}, '[]', 'with what it had: nothing');
like($res && $res->{headers}{connection} // '', qr/close/i,
     'and the connection closed: the next poll goes to a new worker');

my @after = map { $t->publish_ok('/pub', { message => "r$_",
                                            sessionId => 'loop' }) } 1 .. 20;
($got, $polls) = poll_loop('loop', $last, 20, 30);
is_deeply($got, \@after, 'after the reload: every message, in order, '
                         . 'none twice');
ok(wait_until(sub { active() == 0 }, 10), 'counts exact after the reload');

# ----- configuration ------------------------------------------------------

for my $bad (['webhook_stream_transports sse pigeon;', 'invalid value "pigeon"'],
             ['webhook_longpoll_timeout soon;', 'invalid value'])
{
    my $c = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                  http => <<"EOF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /s {
            webhook_stream chat;
            $bad->[0]
        }
    }
EOF
    my ($ok, $out) = $c->test_config;
    ok(!$ok, "nginx -t refuses $bad->[0]");
    like($out, qr/\Q$bad->[1]\E/, "... saying $bad->[1]") or diag $out;
}

finish();
