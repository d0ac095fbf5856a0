#!/usr/bin/perl

# WebSocket streams through a reload (close 1012 "service restart", the
# client resumes on a new worker), a worker killed with -9 (the client
# resumes), and a client that stops reading (closed past
# webhook_stream_buffer, resumes): in each case every message once, in
# order, and exact counts.  Clients: the npm ws client, resuming by
# ?lastEventId= with the last messageId it got, as an application does.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;
use WebhookSSE::WS;

if (my $why = WebhookSSE::WS::unavailable()) {
    plan skip_all => $why;
}

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:64m history=5000;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; client_max_body_size 1m; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /small  {
            webhook_stream chat;
            webhook_replay 0;
            webhook_stream_buffer 64k;
        }
    }
EOF

$t->expect_log(qr/webhook stream too slow/, qr/worker process \d+ exited on signal 9/);

my $base = 'ws://127.0.0.1:' . $t->port;

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : -1;
}

my @pub;    # [id, session]

sub pub
{
    my ($body) = @_;
    my $id = $t->publish_ok('/pub', $body);
    push @pub, [ $id, $body->{sessionId} ];
    return $id;
}

sub expected
{
    my ($session, $from) = @_;
    return [ map { $_->[0] }
             grep { (!defined $_->[1] || $_->[1] eq $session) }
             @pub[ $from .. $#pub ] ];
}

sub round
{
    my ($tag, $n) = @_;
    for my $i (1 .. $n) {
        pub($i % 4 == 0 ? { message => "$tag b$i" }
                        : { message => "$tag $i", sessionId => 'w' . ($i % 5) });
    }
}

sub check_all
{
    my ($clients, $from, $what) = @_;
    my $bad = 0;
    for my $c (@$clients) {
        my $want = expected($c->{session}, $from);
        $c->{ws}->wait_ids($want, 20)
            or diag("$what: $c->{session} waits for messages");
        my @ids = $c->{ws}->message_ids;
        unless (join(',', @ids) eq join(',', @$want)) {
            $bad++;
            diag("$what: $c->{session}: got " . scalar(@ids) . ", want "
                 . scalar(@$want));
        }
    }
    is($bad, 0, "$what: every client has every message once, in order");
}

# ----- reload -------------------------------------------------------------

my @clients = map {
    my $session = 'w' . ($_ % 5);
    { session => $session,
      ws => WebhookSSE::WS->new(url => "$base/stream?sessionId=$session",
                                resume => 1) }
} 1 .. 20;

ok(!grep({ !$_->{ws}->wait_line(qr/^MSG .*"connected"/, 20) } @clients),
   '20 WebSocket clients connected');
ok(wait_until(sub { active() == 20 }, 10), 'activeConnections 20');

my $from = @pub;
round('a', 40);

$t->reload;

round('b', 40);

ok(!grep({ !$_->{ws}->wait_line(qr/^CLOSE 1012 service restart$/, 20) }
         @clients),
   'reload: each client was closed with 1012 "service restart"');
ok(!grep({ !$_->{ws}->wait_line(qr/^MSG .*"connected"/, 20, 2) } @clients),
   'and connected again');
check_all(\@clients, $from, 'reload');
ok(wait_until(sub { active() == 20 }, 10),
   'activeConnections 20 after the reload');

# ----- kill -9 ------------------------------------------------------------

# the worker holding more of the clients: the one with more sockets open
sub sockets
{
    my ($pid) = @_;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    return scalar grep { (readlink("/proc/$pid/fd/$_") // '') =~ /^socket:/ }
                  readdir $dh;
}

my @workers = sort { sockets($b) <=> sockets($a) } $t->worker_pids;
my %closed = map { $_ => $_->{ws}->count(qr/^CLOSE 1006/) } @clients;
round('c', 20);

kill 'KILL', $workers[0];

round('d', 40);

ok(wait_until(sub { $t->worker_pids == 2
                    && !grep { $_ == $workers[0] } $t->worker_pids }, 10),
   'kill -9: the master started a new worker');
check_all(\@clients, 0, 'kill -9 (all since the start)');
ok(scalar(grep { $_->{ws}->count(qr/^CLOSE 1006/) > $closed{$_} } @clients)
   >= 1, 'kill -9: the clients of the killed worker lost their connection');
ok(wait_until(sub { active() == 20 }, 10),
   'activeConnections 20 after the kill');

$_->{ws}->command('close') for @clients;
ok(!grep({ !$_->{ws}->wait_line(qr/^CLOSE 1000\b/, 10) } @clients),
   'clients close cleanly');
ok(wait_until(sub { active() == 0 }, 10), 'activeConnections 0');
$_->{ws}->stop for @clients;

# ----- a client that stops reading --------------------------------------

my $slow = WebhookSSE::WS->new(url => "$base/small?sessionId=slow",
                               resume => 1);
ok($slow->wait_line(qr/^MSG .*"connected"/, 10), 'a client connected');
$slow->command('pause');

$from = @pub;
my $big = 'x' x 32768;
for my $i (1 .. 400) {
    pub({ message => "$i $big", sessionId => 'slow' });
    last if $i >= 40 && $t->error_log =~ /webhook stream too slow/;
}

ok($t->error_log =~ /webhook stream too slow/,
   'a client that does not read is closed past webhook_stream_buffer');
ok(wait_until(sub { active() == 0 }, 10), 'and no longer counted');

$slow->command('resume');
my $want = expected('slow', $from);
ok($slow->wait_ids($want, 30), 'it resumes and gets the rest');
is_deeply([ $slow->message_ids ], $want, 'every message once, in order');
$slow->stop;

finish();
