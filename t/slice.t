#!/usr/bin/perl

# A worker writing one event to thousands of streams does it a slice at a
# time and reads what else came in between: a request that arrives while
# the event is on its way is answered before every stream has it (with the
# whole sweep done first, the answer would always come after the last
# stream's event). Every stream still gets every event once, in order.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Poll qw(POLLIN);
use IO::Socket::INET;
use Test::More;
use WebhookSSE::Test;

my $N = 6000;

my $t = WebhookSSE::Test->new(workers => 1, worker_connections => 2 * $N,
                              http => <<'EOF')->start;
    webhook_zone zone=chat:16m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /status { webhook_status chat; }
        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_heartbeat off;
        }
    }
EOF

my @streams;

sub open_streams
{
    my ($count) = @_;

    for my $i (1 .. $count) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp',
                                      Timeout => 10)
            or die "stream " . (@streams + 1) . ": connect: $!";
        print $s "GET /stream?sessionId=hot HTTP/1.1\r\n"
                 . "Host: localhost\r\n\r\n";
        $s->blocking(0);
        push @streams, $s;
    }

    # in batches the listen queue can hold
    return wait_until(sub {
        my $r = $t->request('GET', '/status');
        ($r->{json}{streams} // 0) == @streams;
    }, 30);
}

my $open = 1;

while (@streams < $N && $open) {
    $open = open_streams(500);
}

ok($open, "$N streams open");

my %got;    # stream index -> what it read so far

sub drain
{
    for my $i (0 .. $#streams) {
        while (sysread($streams[$i], my $buf, 65536)) {
            $got{$i} .= $buf;
        }
    }
}

# the streams that have something to read, in one poll() of all of them
sub readable
{
    my $poll = IO::Poll->new;
    $poll->mask($_ => POLLIN) for @streams;
    $poll->poll(0);
    return scalar(grep { $poll->events($_) & POLLIN } @streams);
}

sub wait_all_readable
{
    my $deadline = time + 20;
    while (time < $deadline) {
        return 1 if readable() == $N;
        select(undef, undef, undef, 0.05);
    }
    return 0;
}

drain();
%got = ();

my (@ids, $first);

# a descheduled test client could miss the sweep once; five tries
for my $try (1 .. 5) {
    my $id = $t->publish_ok('/pub',
                            { message => "m$try", sessionId => 'hot' });
    push @ids, $id;

    # on a connection of its own: nginx must accept it mid-sweep
    my $r = $t->request('GET', '/status');
    my $had = readable();

    is($r->{status}, 200, "try $try: status answered");
    diag("try $try: $had of $N streams had the event when the status "
         . "answer came");

    ok(wait_all_readable(), "try $try: every stream gets the event");
    drain();

    if ($had < $N) {
        $first = $had;
        last;
    }
}

ok(defined $first, 'a request was answered while the event was still '
   . 'on its way to the streams');

my $bad = 0;

for my $i (0 .. $#streams) {
    my @seen = ($got{$i} // '') =~ /"messageId":"([^"]+)"/g;
    $bad++ unless "@seen" eq "@ids";
}

is($bad, 0, "every stream got each of the " . scalar(@ids)
   . " events once, in order");

close $_ for @streams;

$t->check_error_log;

finish();
