#!/usr/bin/perl

# Faults: a worker killed with -9 while publishes and streams run (the
# zone is neither locked nor corrupt, counts come back exact, resuming
# clients lose nothing acknowledged), garbage instead of a request, and
# thousands of streams on one session.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes ();
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(
    workers => 2,
    expect_log => [ qr/worker process \d+ exited on signal 9/ ],
    http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=1000;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : undef;
}

sub seq_of { (id_parts($_[0]))[1] // 0 }

# ----- kill -9 a worker under load ---------------------------------------------

my @sessions = map { "k$_" } 0 .. 4;
my %streams = map { $_ => [ map { $t->sse("/stream?sessionId=$_") } 1 .. 4 ] }
              @sessions;
$_->wait_events(1, 5) for map { @$_ } values %streams;

is(active(), 20, 'kill -9: 20 streams open before');

my $start = $t->publish_ok('/pub', { message => 'start' });

pipe my $rd, my $wr or die "pipe: $!";
my $kid = fork // die "fork: $!";

if ($kid == 0) {
    close $rd;
    for my $i (0 .. 199) {
        my $sess = $sessions[$i % 5];
        my $r = eval { $t->publish('/pub', { message => "load $i",
                                             sessionId => $sess }) };
        print $wr (($r && $r->{status} == 200)
                   ? "$r->{json}{messageId} $sess\n" : "fail\n");
        Time::HiRes::sleep(0.005);
    }
    close $wr;
    POSIX::_exit(0);
}

close $wr;

my @before = $t->worker_pids;
Time::HiRes::sleep(0.3);
kill 'KILL', $before[0];

my (%acked, $fails);
while (my $line = <$rd>) {
    if ($line =~ /^(\S+) (\S+)$/) {
        push @{ $acked{$2} }, $1;
    } else {
        $fails++;
    }
}
close $rd;
waitpid $kid, 0;

ok(WebhookSSE::Test::wait_until(sub {
       my @now = $t->worker_pids;
       @now == 2 && !grep { $_ == $before[0] } @now }, 10),
   'kill -9: the master started a new worker');

ok(($fails // 0) <= 5, 'kill -9: at most the publishes in flight on the '
                       . 'killed worker failed (' . ($fails // 0) . ')');

my $after = $t->publish('/pub', { message => 'after', sessionId => 'k0' });
is($after->{status}, 200, 'kill -9: the zone is not left locked, '
                          . 'publishing works');

# streams of the killed worker are gone; the others are still counted
my @open = grep { !$_->is_closed(0.5) } map { @$_ } values %streams;
ok(WebhookSSE::Test::wait_until(sub { (active() // -1) == @open }, 5),
   'kill -9: activeConnections equals the streams still open ('
   . scalar(@open) . ')') or diag 'active: ' . (active() // 'undef');

# every client resumes from the last id it saw: nothing acknowledged lost

my $bad = 0;

for my $sess (@sessions) {
    my @want = (@{ $acked{$sess} // [] },
                $sess eq 'k0' ? $after->{json}{messageId} : ());

    for my $s (@{ $streams{$sess} }) {
        my @seen = grep { defined } map { $_->{id} }
                   $s->wait_events(1000, 0.2);
        my $last = @seen ? $seen[-1] : $start;

        $s->close;

        my $r = $t->sse("/stream?sessionId=$sess",
                        headers => { 'Last-Event-ID' => $last });
        my @missing = grep { seq_of($_) > seq_of($last) } @want;
        my @got = grep { defined } map { $_->{id} }
                  $r->wait_events(1 + @missing, 5);
        shift @got if @got && !defined $got[0];

        # the start marker was a broadcast: count from after it
        my @all = grep { seq_of($_) > seq_of($start) } (@seen, @got);
        my @expect = grep { seq_of($_) > seq_of($start) } @want;

        if (join(',', @all) ne join(',', @expect)) {
            $bad++;
            diag "session $sess: got " . scalar(@all) . ", want "
                 . scalar(@expect);
        }
        $r->close;
    }
}

is($bad, 0, 'kill -9: every client, resumed by Last-Event-ID, has every '
            . 'acknowledged message of its session exactly once, in order');

ok(WebhookSSE::Test::wait_until(sub { (active() // -1) == 0 }, 5),
   'kill -9: activeConnections back to 0 once all closed');

# ----- garbage instead of a request ------------------------------------------

{
    my $s = $t->sse('/stream?sessionId=g');
    $s->wait_events(1, 5);

    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!";
    print $c "\x00\x01\xff garbage \x16\x03\x01\r\n\r\n";
    my $answer = '';
    my $sel = IO::Select->new($c);
    while ($sel->can_read(3)) {
        last unless sysread($c, my $buf, 4096);
        $answer .= $buf;
    }
    close $c;

    like($answer, qr{^HTTP/1\.1 400 }, 'garbage request: 400 and closed');

    my $id = $t->publish_ok('/pub', { message => 'still', sessionId => 'g' });
    is(scalar $s->wait_for_event($id, 5), 1,
       'garbage request: streams alongside unaffected');
    $s->close;
}

# ----- thousands of streams on one session ------------------------------------

{
    my $n = 2000;
    my @many = map { $t->sse('/stream?sessionId=crowd', wait => 0) } 1 .. $n;

    ok(WebhookSSE::SSE::wait_all(\@many, sub { $_[0]->pending_events }, 20),
       "$n streams on one session connected");
    is(active(), $n, "$n streams: activeConnections exact");

    my $id = $t->publish_ok('/pub', { message => 'to the crowd',
                                      sessionId => 'crowd' });

    ok(WebhookSSE::SSE::wait_all(\@many, sub {
           grep { ($_->{id} // '') eq $id } @{ $_[0]{events} } }, 20),
       "$n streams: every one receives the message");

    $_->abort for @many;

    ok(WebhookSSE::Test::wait_until(sub { (active() // -1) == 0 }, 10),
       "$n streams: count back to 0 after they all vanish");
}

finish();
