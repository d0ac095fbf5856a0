#!/usr/bin/perl

# A zone far too small for the traffic, over a long run (t/zone.t floods a
# tiny zone once; this keeps it full): thousands of publishes a second of
# mixed sizes to a few watched sessions and to ever new ones, with live
# and resuming streams (util/soak/soak.c drives the load).  The oldest
# data is evicted; the only 503s are for messages larger than a quarter of
# the zone, never for one that fits, however fragmented the zone is; live
# streams miss nothing; the error log has no [alert]/[crit] and is not
# flooded; zone use, channels and worker memory stay flat.
#
# SOAK_SECONDS=600 prove t/zone_soak.t runs it for 10 minutes (default
# 15 s, 8 s under AddressSanitizer at a fifth of the rate).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../util/soak";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use Soak;

my $SECONDS = Soak::seconds(15, 8);
my $RATE    = Soak::rate(5000, 1000);
my $ZONE    = 256 * 1024;
my $CHECK   = $SECONDS / 20 < 1 ? 1 : int($SECONDS / 20);

my $ANON_SLACK_KB = 512;
my $ANON_SLACK_PCT = 3;

my $t = WebhookSSE::Test->new(workers => 2, http => <<'EOF')->start;
    webhook_zone zone=tiny:256k history=50;

    server {
        listen 127.0.0.1:%%PORT%% reuseport backlog=4096;
        access_log off;
        client_max_body_size 1m;

        location = /pub     { webhook_publish tiny; }
        location = /stream  { webhook_stream tiny; webhook_replay 0; }
        location = /replay  { webhook_stream tiny; webhook_replay 100; }
        location = /status  { webhook_status tiny; }
    }
EOF

my @pids = $t->worker_pids;

# published before the run, on a session nobody watches
my @early = map { $t->publish_ok('/pub', { message => "early $_",
                                           sessionId => 'early' }) } 1 .. 5;

my $run = Soak->start($t,
    '--status'          => '/status',
    '--rate'            => $RATE,
    '--duration'        => $SECONDS,
    '--sessions'        => 20,
    '--streams'         => 40,
    '--stable'          => 20,
    '--churn'           => 5,
    '--resume-pct'      => 100,
    '--pause-max'       => 1000,
    '--size-min'        => 16,
    '--size-max'        => 1500,
    '--fresh-pct'       => 30,            # ever new sessions: new channels
    '--broadcast-every' => 500,
    '--big-every'       => 997,           # 40k: fits (a quarter is 64k)
    '--big-size'        => 40 * 1024,
    '--huge-every'      => 1009,          # 70k: can never fit
    '--huge-size'       => 70 * 1024,
    '--checkpoint'      => $CHECK,
    '--server-pids'     => join(',', @pids),
    '--quiet'           => undef);

my $r = $run->wait;
my $f = $r->{final};
my @cp = @{ $r->{checkpoints} };

note(Soak::describe($r));

ok($f && $r->{exit} == 0 && !$r->{timed_out}, 'soak driver ran to the end')
    or diag "exit $r->{exit}, stderr:\n$r->{stderr}";
$f //= {};

# ----- what is accepted ---------------------------------------------------------

# The rate reached is the machine's (t/soak.t): what is checked is that
# the run was a soak at all.
note(sprintf('publishes: %.0f/s of the %d/s asked', $f->{pub_per_s} // 0,
             $RATE));
ok(($f->{pub_acked} // 0) >= $RATE * $SECONDS / 20,
   "publishes: $f->{pub_acked} into a 256k zone in $SECONDS s (at least a "
   . 'twentieth of the ' . $RATE * $SECONDS . ' asked)');
is($f->{pub_normal_503}, 0, 'publishes: no 503 for a message that fits '
                            . "($f->{pub_acked} answered 200)");
is($f->{pub_big_rejected}, 0, "publishes: all $f->{pub_big} messages of "
                              . '40k (under a quarter of the zone) stored');
ok($f->{pub_huge} > 0 && $f->{pub_huge_503} == $f->{pub_huge},
   "publishes: each of the $f->{pub_huge} messages of 70k answered 503");
is($f->{pub_other_status} + $f->{pub_unknown}, 0,
   'publishes: no other error, no connection lost');

my $last = $cp[-1] // {};
ok(($last->{zone_evicted} // 0) > 0,
   "zone: old data evicted ($last->{zone_evicted} messages)");

# ----- delivery -----------------------------------------------------------------

is_deeply({ map { $_ => $f->{$_} } qw(dups order misrouted foreign
                                      id_mismatch bad_event epoch_change
                                      rejected_seen) },
          { map { $_ => 0 } qw(dups order misrouted foreign id_mismatch
                               bad_event epoch_change rejected_seen) },
          "events: $f->{events} checked: no duplicate, none out of order "
          . 'or for another session, nothing refused delivered');
# When the zone runs short, eviction takes the oldest message every worker
# has fetched before any a worker still has to fetch: live streams miss
# nothing while their workers keep up with the zone's turnover.  A 256k
# zone holds some 25 ms of this traffic: whether a worker is descheduled
# for longer is the machine's business (lost 38 in run 2 of 20 with a CPU
# hog, 122 under AddressSanitizer), so it is only reported here; the
# promise itself is checked below with a worker stopped on purpose.
note("live streams: $f->{lost_live} messages evicted before their worker "
     . "fetched them, in $f->{gaps_live} gaps");
is($f->{lost_tail}, 0, 'events: every stream has every message at the end');
note("resumes: $f->{resumes}; messages evicted before a client came back "
     . "for them: $f->{lost_resume} (not promised, as documented)");

is($f->{count_mismatch}, 0, 'counts: exact at every checkpoint');
ok($f->{zero_ok}, 'counts: 0 once all closed');

# ----- the zone afterwards ------------------------------------------------------

{
    my $rp = $t->stream_replay('/replay?sessionId=early', '/pub',
                               { message => 'marker',
                                 sessionId => 'early' });
    # (a replay also holds the retained broadcasts: only the session's
    # own messages count here)
    my @left = grep { ($_->{json}{sessionId} // '') eq 'early' }
               @{ $rp->{replay} };
    is(scalar @left, 0, 'zone: the messages from before the run were '
                        . 'evicted');
    $rp->{stream}->close;

    my @mine = map { $t->publish_ok('/pub', { message => "late $_",
                                              sessionId => 'late' }) }
               1 .. 5;
    $rp = $t->stream_replay('/replay?sessionId=late', '/pub',
                            { message => 'marker', sessionId => 'late' });
    is_deeply([ map { $_->{id} } grep { ($_->{json}{sessionId} // '')
                                        eq 'late' } @{ $rp->{replay} } ],
              \@mine,
              'zone: the latest messages are replayable');
    $rp->{stream}->close;
}

# ----- memory -------------------------------------------------------------------

{
    my @used = map { $_->{zone_used} } @cp;
    my @chan = map { $_->{zone_channels} } @cp;
    my ($max_used) = sort { $b <=> $a } @used;
    ok($max_used <= $ZONE, "zone: at most $max_used of $ZONE bytes used");

    my ($cmid, $cmax) = Soak::second_half_growth(\@chan);
    ok($cmax <= $cmid + 100, "zone: channels do not pile up ($cmid at half "
                             . "time, at most $cmax after; "
                             . "$f->{pub_fresh} publishes to new sessions)");
}

is_deeply([ $t->worker_pids ], \@pids, 'the same two workers throughout');

SKIP: {
    skip 'memory is not flat under AddressSanitizer (quarantine)', 1
        if Soak::asan();

    my ($mid, $max, $last_kb, $growth) =
        Soak::second_half_growth([ map { $_->{anon_kb} } @cp ]);
    my $bound = $ANON_SLACK_KB;
    $bound = $mid * $ANON_SLACK_PCT / 100
        if $mid * $ANON_SLACK_PCT / 100 > $bound;
    ok($growth <= $bound,
       "memory: workers' private memory $mid KB at half time, at most "
       . "$max KB after (growth $growth KB, bound " . int($bound) . ' KB)');

    my ($rmid, $rmax) = Soak::second_half_growth([ map { $_->{rss_kb} }
                                                   @cp ]);
    note("RSS with the zone's pages: $cp[0]{rss_kb} KB first, $rmid KB at "
         . "half time, $rmax KB max after");
}

# ----- a worker that is late to fetch -----------------------------------------

# One worker stops for a moment (SIGSTOP: as a worker busy with something
# else, or descheduled) while publishes through the other worker turn the
# zone over three times.  Its streams were told about every message; when
# it runs again they must get every one that was acknowledged, as the
# other worker's streams do.  (Refusing publishes with 503 while the zone
# is full of unfetched messages would keep that promise too.)

# the worker process holding the server side of one of our sockets
sub worker_of
{
    my ($sock) = @_;
    my $client = sprintf '0100007F:%04X', $sock->sockport;
    my $server = sprintf '0100007F:%04X', $t->port;
    my $inode;

    open my $fh, '<', '/proc/net/tcp' or return;
    while (my $line = <$fh>) {
        my @f = split ' ', $line;
        if ($f[1] eq $server && $f[2] eq $client) {
            $inode = $f[9];
            last;
        }
    }
    close $fh;
    return unless $inode;

    for my $pid ($t->worker_pids) {
        opendir my $d, "/proc/$pid/fd" or next;
        for my $fd (readdir $d) {
            my $l = readlink "/proc/$pid/fd/$fd" // next;
            return $pid if $l eq "socket:[$inode]";
        }
    }
    return;
}

# publishes pipelined on an open keep-alive connection; the statuses and
# ids in order
sub publish_on
{
    my ($sock, @bodies) = @_;
    my $req = join '', map {
        "POST /pub HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($_) . "\r\n\r\n$_"
    } @bodies;

    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my ($off, $in, @res) = (0, '');
    my $deadline = time + 20;

    while (@res < @bodies && time < $deadline) {
        my ($r, $w) = IO::Select->select($sel, $off < length $req ? $sel
                                                                  : undef,
                                         undef, 1);
        if ($w && @$w) {
            my $n = syswrite $sock, $req, length($req) - $off, $off;
            $off += $n if $n;
        }
        if ($r && @$r) {
            my $n = sysread $sock, $in, 65536, length $in;
            last if defined $n && $n == 0;
        }
        while ($in =~ /\AHTTP\/1\.1 (\d+)[^\r]*\r\n(.*?)\r\n\r\n/s) {
            my ($status, $head, $end) = ($1, $2, $+[0]);
            my ($len) = $head =~ /Content-Length: (\d+)/i;
            last unless defined $len && length $in >= $end + $len;
            my $body = substr $in, $end, $len;
            substr($in, 0, $end + $len) = '';
            push @res, [ $status, (json_decode($body) // {})->{messageId} ];
        }
    }
    return @res;
}

# A keep-alive connection that the given worker accepted: which worker
# accepts is the kernel's choice (reuseport: by the source port), so
# connections are opened until that one holds one (bounded).
sub connection_on
{
    my ($pid) = @_;
    for (1 .. 200) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp')
            or die "connect: $!";
        my ($r) = publish_on($c, json_encode({ message => 'hello',
                                               sessionId => 'other' }));
        return $c if $r && $r->[0] == 200 && (worker_of($c) // 0) == $pid;
        close $c;
    }
    die "no connection accepted by worker $pid in 200\n";
}

# Streams on a session, by the worker that holds them; returns the worker
# holding the most of them (a stopped one), the other worker (a running
# one) and the streams by worker.
sub streams_by_worker
{
    my ($session, $n) = @_;
    my @streams = map { $t->sse("/stream?sessionId=$session") } 1 .. $n;
    $_->wait_events(1, 5) for @streams;

    my %on;
    push @{ $on{ worker_of($_->{fh}) // 0 } }, $_ for @streams;
    die "streams of $session on no known worker\n" if $on{0};
    my ($most) = sort { @{ $on{$b} } <=> @{ $on{$a} } } keys %on;
    my ($other) = grep { $_ != $most } $t->worker_pids;
    return ($most, $other, \%on, \@streams);
}

{
    my ($late, $busy, $on, $all) = streams_by_worker('late', 10);
    my %streams_on = %$on;
    my @streams = @$all;
    my %pub_on = ($busy => connection_on($busy));
    my @pubs = values %pub_on;

    $_->wait_events(1000, 0.2) for @streams;     # the hellos, if any

    kill 'STOP', $late;
    my @res = eval {
        publish_on($pub_on{$busy},
                   map { json_encode({ message => "late $_ " . ('x' x 1500),
                                       sessionId => 'late' }) } 1 .. 500);
    };
    kill 'CONT', $late;

    my @acked = map { $_->[1] } grep { $_->[0] == 200 } @res;
    my %status;
    $status{ $_->[0] }++ for @res;
    note('late worker: publishes answered ' . join(', ', map {
        "$status{$_} x $_" } sort keys %status));

    ok(@res == 500 && @acked >= 50,
       'late worker: the other worker answered all 500 publishes while it '
       . 'was stopped (' . scalar(@acked) . ' with 200)');

    my $end = $t->publish_ok('/pub', { message => 'end',
                                       sessionId => 'late' });
    my (%bad, %count);
    for my $w (keys %streams_on) {
        for my $s (@{ $streams_on{$w} }) {
            my @got = grep { $_ ne $end }
                      map { $_->{id} // '' } $s->wait_for_event($end, 10);
            my $who = $w == $late ? 'stopped' : 'running';

            # what a stopped worker can still have: the newest messages,
            # in order, none twice (the zone could not keep all 500)
            my %pos;
            @pos{@acked} = 0 .. $#acked;
            my @p = map { $pos{$_} // -1 } @got;
            my $ok = $who eq 'running'
                     ? join(',', @got) eq join(',', @acked)
                     : (@got && !grep({ $_ < 0 } @p)
                        && !grep({ $p[$_] <= $p[$_ - 1] } 1 .. $#p)
                        && $p[-1] == $#acked);
            $count{$who}++;
            $bad{$who}++ unless $ok;
            note("stream on the $who worker: " . scalar(@got) . ' of '
                 . scalar(@acked) . ' acknowledged messages');
        }
    }

    # not promised (docs/reliability.md): a worker stopped for longer than
    # the zone takes to turn over loses what was evicted meanwhile
    is($bad{stopped} // 0, 0, "late worker: its $count{stopped} streams get "
                              . 'the newest messages, in order, none twice');
    is($bad{running} // 0, 0, 'late worker: the other worker\'s '
                              . ($count{running} // 0) . ' streams get '
                              . 'every acknowledged message');

    $_->close for @streams, @pubs;
}

# ----- eviction takes what every worker has fetched first ---------------------

# The promise the soak above can only report on, made independent of
# scheduling: a worker stopped with 20 messages still to fetch keeps them
# while 600 messages of 1.5k to sessions nobody watches (fetched by no one,
# so never waited for) turn the 256k zone over several times; when it runs
# again its streams get all 20, in order.

{
    my ($stopped, $running, $on) = streams_by_worker('kept', 10);
    my $c = connection_on($running);
    my $evicted = $t->request('GET', '/status')->{json}{evicted};

    kill 'STOP', $stopped;
    my @kept = eval {
        publish_on($c, map { json_encode({ message => "kept $_ "
                                                      . ('x' x 1500),
                                           sessionId => 'kept' }) } 1 .. 20);
    };
    my @other = eval {
        publish_on($c, map { json_encode({ message => "nobody $_ "
                                                      . ('x' x 1500),
                                           sessionId => "nobody$_" }) }
                       1 .. 600);
    };
    kill 'CONT', $stopped;

    is(scalar(grep { $_->[0] == 200 } @kept, @other), 620,
       'fetched first: 620 publishes through the running worker, all 200');
    my $gone = $t->request('GET', '/status')->{json}{evicted} - $evicted;
    ok($gone >= 400, "fetched first: the zone turned over ($gone messages "
                     . 'evicted)');

    my @want = map { $_->[1] } @kept;
    my $end = $t->publish_ok('/pub', { message => 'end',
                                       sessionId => 'kept' });
    my %bad;
    for my $w (keys %$on) {
        for my $s (@{ $on->{$w} }) {
            my @got = grep { $_ ne $end }
                      map { $_->{id} // '' } $s->wait_for_event($end, 10);
            $bad{$w}++ unless join(',', @got) eq join(',', @want);
        }
        $_->close for @{ $on->{$w} };
    }
    is($bad{$stopped} // 0, 0, 'fetched first: the '
       . scalar(@{ $on->{$stopped} }) . ' streams of the stopped worker '
       . 'get all 20 messages it had still to fetch, in order');
    is($bad{$running} // 0, 0, 'fetched first: the '
       . scalar(@{ $on->{$running} // [] }) . ' streams of the running '
       . 'worker get all 20 too');
    close $c;
}

# ----- the error log ------------------------------------------------------------

{
    my @lines = split /\n/, $t->error_log;
    # nginx's own note on the large bodies it buffers to temporary files
    # is not the module's
    my @warn = grep { /\[(warn|error)\]/
                      && !/client request body is buffered to a temporary/ }
               @lines;
    my @other = grep { !/cannot store a message of \d+ bytes/ } @warn;
    ok(@warn <= $f->{pub_huge} + 10,
       'error log: one warning per refused message, no flood ('
       . scalar(@warn) . " warn/error lines for $f->{pub_huge} refusals)");
    is(scalar @other, 0, 'error log: no other warnings')
        or diag join "\n", @other[0 .. ($#other < 9 ? $#other : 9)];
}

finish();
