#!/usr/bin/perl

# Soak: 10000 publishes/s for a sustained period while streams connect and
# disconnect at random (util/soak/soak.c drives the load and checks every
# event).  Nothing leaks (worker memory and zone use flat after warm-up),
# counts are exact (activeConnections and webhook_status at every
# checkpoint, 0 at the end), nothing is lost (streams that stay connected
# see a gapless sequence, streams resuming with Last-Event-ID see no gap or
# duplicate).
#
# SOAK_SECONDS=600 prove t/soak.t runs it for 10 minutes (default 20 s,
# 8 s under AddressSanitizer at a fifth of the rate); SOAK_RATE sets the
# publishes per second.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../util/soak";

use Test::More;
use WebhookSSE::Test;
use Soak;

my $SECONDS  = Soak::seconds(20, 8);
my $RATE     = Soak::rate(10000, 2000);
my $STREAMS  = Soak::asan() ? 100 : 400;
my $SESSIONS = 100;
my $CHURN    = Soak::asan() ? 25 : 100;       # disconnects per second
my $HISTORY  = 400;
my $CHECK    = $SECONDS / 20 < 1 ? 1 : int($SECONDS / 20);

# Publish connections are renewed after 1000 requests, as nginx's default
# keepalive_requests does: one connection kept for millions of requests
# grows nginx's own per-connection memory (a plain "return 200" does the
# same; see keepalive_requests in nginx's documentation).
#
# Memory after warm-up: the workers' private memory (RssAnon, both
# together) may grow by at most this much over the second half of the
# run: a leak of one 100-byte object per publish would be 1 MB/s.  When
# the machine stalls, streams queue more for a moment and malloc keeps
# what it got (steps of 244 and 356 KB at checkpoints that waited 56 ms,
# in run 9 of 20): 16 bytes per publish of the window are allowed too,
# a sixth of that leak.
my $ANON_SLACK_KB = 512;
my $ANON_SLACK_PCT = 3;
my $ANON_SLACK_PER_PUB = 16;

my $CONF = <<'EOF';
    webhook_zone zone=chat:64m history=%%HISTORY%%;

    server {
        listen 127.0.0.1:%%PORT%% reuseport backlog=4096;
        access_log off;

        location = /pub {
            webhook_publish chat;
            webhook_secret "soak-secret";
        }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

(my $conf = $CONF) =~ s/%%HISTORY%%/$HISTORY/;
my $t = WebhookSSE::Test->new(workers => 2, http => $conf)->start;

my @pids = $t->worker_pids;
is(scalar @pids, 2, 'two workers');

my $run = Soak->start($t,
    '--pub'         => '/pub',
    '--secret'      => 'soak-secret',
    '--stream'      => '/stream',
    '--status'      => '/status',
    '--rate'        => $RATE,
    '--duration'    => $SECONDS,
    '--sessions'    => $SESSIONS,
    '--streams'     => $STREAMS,
    '--churn'       => $CHURN,
    '--resume-pct'  => 70,
    '--pause-max'   => 500,
    '--checkpoint'  => $CHECK,
    '--server-pids' => join(',', @pids),
    '--quiet'       => undef);

my $r = $run->wait;
my $f = $r->{final};
my @cp = @{ $r->{checkpoints} };

note(Soak::describe($r));

ok($f && $r->{exit} == 0 && !$r->{timed_out}, 'soak driver ran to the end')
    or diag "exit $r->{exit}, stderr:\n$r->{stderr}";
$f //= {};

# ----- publishing ---------------------------------------------------------------

# The rate reached is the machine's: on 2 shared cores the driver and
# nginx get what other processes leave (5339/s of 10000 in run 2 of 20
# with a CPU hog, 1189/s of 2000 under AddressSanitizer); make bench
# measures speed.  What is checked is that the run was a soak at all.
note(sprintf('publishes: %.0f/s of the %d/s asked', $f->{pub_per_s} // 0,
             $RATE));
ok(($f->{pub_acked} // 0) >= $RATE * $SECONDS / 20,
   "publishes: $f->{pub_acked} in $SECONDS s (at least a twentieth of the "
   . $RATE * $SECONDS . ' asked)');
is($f->{pub_acked}, $f->{pub_sent},
   "publishes: all $f->{pub_sent} answered 200");
is($f->{pub_unknown} + $f->{pub_reconnects}, 0,
   'publishes: no keep-alive connection lost');

# ----- streams ------------------------------------------------------------------

# the driver churns at its rate between checkpoints, which wait for every
# stream to be back: fewer on a busy machine (124 of 200 in a run under
# AddressSanitizer)
ok($f->{churned} >= $CHURN * $SECONDS / 20,
   "streams: $f->{churned} disconnected at random by the clients "
   . "($f->{churn_rst} with RST; at least a twentieth of the "
   . $CHURN * $SECONDS . ' asked)');
ok($f->{resumes} >= 0.5 * $f->{churned} && $f->{fresh_connects} > $STREAMS,
   "streams: $f->{resumes} came back with Last-Event-ID, "
   . ($f->{fresh_connects} - $STREAMS) . ' as new streams');
is($f->{unexpected_close} + $f->{closed_early} + $f->{http_err}
   + $f->{conn_fail} + $f->{proto_err}, 0,
   'streams: none refused, failed or ended by the server');

ok($f->{events} >= $f->{pub_acked},
   "events: $f->{events} checked");
is_deeply({ map { $_ => $f->{$_} } qw(dups order misrouted foreign
                                      id_mismatch bad_event epoch_change) },
          { map { $_ => 0 } qw(dups order misrouted foreign id_mismatch
                               bad_event epoch_change) },
          'events: no duplicate, none out of order or for another '
          . 'session, ids as answered to the publisher');
is_deeply([ @$f{qw(gaps_live gaps_resume gaps_tail)} ], [ 0, 0, 0 ],
          'events: no gap on streams that stayed connected, across '
          . 'resumes, or at the end');
is($f->{lost_live} + $f->{lost_resume} + $f->{lost_tail}, 0,
   'events: no acknowledged message missing on any stream');
ok($f->{drained}, sprintf('events: every stream caught up %.0f ms after '
                          . 'the last publish', $f->{drain_ms} // -1));

# ----- counts -------------------------------------------------------------------

ok(@cp >= 3, scalar(@cp) . ' checkpoints');
is($f->{count_mismatch}, 0, 'counts: activeConnections and the status '
                            . "streams figure equal the $STREAMS open "
                            . 'streams at every checkpoint')
    or diag join "\n", map { "t=$_->{t} open $_->{open} active "
                             . "$_->{active} status $_->{streams}" }
                       grep { !$_->{ok} } @cp;
ok($f->{zero_ok}, "counts: 0 once all closed (active $f->{zero_active}, "
                  . "status $f->{zero_streams})");
is($t->request('GET', '/pub')->{json}{activeConnections}, 0,
   'counts: GET health says 0');

my $st = $t->request('GET', '/status')->{json};
is($st->{streams}, 0, 'counts: webhook_status streams 0');
is($st->{workers}, 2, 'status: two workers in the zone');
ok($st->{channels} <= $SESSIONS + 1, "status: $st->{channels} channels "
                                     . "for $SESSIONS sessions");

# ----- memory -------------------------------------------------------------------

is_deeply([ $t->worker_pids ], \@pids, 'the same two workers throughout');

SKIP: {
    skip 'memory is not flat under AddressSanitizer (quarantine)', 3
        if Soak::asan();

    my ($mid, $max, $last, $growth) =
        Soak::second_half_growth([ map { $_->{anon_kb} } @cp ]);
    my $pubs = @cp ? $cp[-1]{acked} - $cp[ int($#cp / 2) ]{acked} : 0;
    my $bound = $ANON_SLACK_KB;
    $bound = $mid * $ANON_SLACK_PCT / 100 if $mid * $ANON_SLACK_PCT / 100
                                             > $bound;
    $bound = $pubs * $ANON_SLACK_PER_PUB / 1024
        if $pubs * $ANON_SLACK_PER_PUB / 1024 > $bound;
    ok($growth <= $bound,
       "memory: workers' private memory $cp[0]{anon_kb} KB at the first "
       . "checkpoint, $mid KB at half time, at most $max KB after "
       . "(growth $growth KB, bound " . int($bound) . " KB for $pubs "
       . "publishes), $f->{anon_last_kb} KB at the end");

    # The zone grows until every session's history is full: from the
    # later of half time and the checkpoint by which 1.5 times the
    # history of every session was published (each session has had 400
    # then, however the sessions were drawn).  How soon that is depends on
    # the rate the machine allows (at 5339/s, in a run with a CPU hog,
    # only at half time): a run too slow to fill it leaves too few
    # checkpoints to judge flatness by.
    my $full = 1.5 * $HISTORY * $SESSIONS;
    my ($filled) = grep { $cp[$_]{acked} >= $full } 0 .. $#cp;
    my $from = int($#cp / 2);
    $from = $filled if defined $filled && $filled > $from;
    skip "the history was full only at checkpoint "
         . ($filled // 'never') . ' of ' . scalar(@cp) . ' (the machine '
         . 'allowed ' . int($f->{pub_per_s} // 0) . ' publishes/s)', 2
        if !defined $filled || $#cp - $from < 2;

    my ($rmid, $rmax, $rlast, $rgrowth) =
        Soak::growth_from([ map { $_->{rss_kb} } @cp ], $from);
    note("RSS (with the shared zone pages touched): $cp[0]{rss_kb} KB "
         . "first, $rmid KB at checkpoint $from, $rmax KB max after, "
         . "$rlast KB last");

    my ($umid, $umax, $ulast, $ugrowth) =
        Soak::growth_from([ map { $_->{zone_used} } @cp ], $from);
    ok($ugrowth <= $umid * 0.03,
       "memory: zone use flat once the history is full ($umid bytes at "
       . "checkpoint $from of " . scalar(@cp) . ", at most $umax after)");

    # VmRSS also counts the zone's pages each worker touched: allow for
    # what the zone use grew, in both workers
    ok($rgrowth <= $bound + 2 * ($umax - $umid) / 1024,
       "memory: worker RSS flat ($rmid KB at checkpoint $from, at most "
       . "$rmax KB after)");
}

# ----- the checker itself can fail ----------------------------------------------

{
    # The same run against a zone that keeps 3 messages per session: a
    # client away for up to half a second must miss some, and the driver
    # must say so.
    (my $small = $CONF) =~ s/%%HISTORY%%/3/;
    my $t2 = WebhookSSE::Test->new(workers => 2, http => $small)->start;
    my $r2 = Soak->start($t2, '--secret' => 'soak-secret',
                         '--status' => '/status', '--rate' => 2000,
                         '--duration' => 2, '--streams' => 50,
                         '--churn' => 50, '--resume-pct' => 100,
                         '--checkpoint' => 1, '--quiet' => undef)->wait;
    my $g = $r2->{final} // {};
    ok(($g->{lost_resume} // 0) > 0 && !$g->{lost_live},
       'self-check: with history=3 the driver reports messages lost across '
       . 'resumes (' . ($g->{lost_resume} // 'none') . ')');
    $t2->stop;
}

finish();
