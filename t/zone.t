#!/usr/bin/perl

# webhook_zone: a tiny zone under thousands of publishes to many sessions
# (eviction instead of errors), 503 only for a message the zone can never
# hold, TTL expiry, and the zone surviving reload (a resized zone starts a
# new epoch).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use WebhookSSE::Test;

my $conf = <<'EOF';
    webhook_zone zone=tiny:%%TINY%% history=20;
    webhook_zone zone=short:1m ttl=1s;
    webhook_zone zone=keep:%%KEEP%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 2m;

        location = /pub          { webhook_publish tiny; }
        location = /stream       { webhook_stream tiny; }
        location = /pubshort     { webhook_publish short; }
        location = /streamshort  { webhook_stream short; webhook_replay 100; }
        location = /pubkeep      { webhook_publish keep; }
        location = /streamkeep   { webhook_stream keep; }
    }
EOF

# The contract asks for 128k zones to work; should the module refuse them,
# that fails here and the rest runs with the smallest accepted size.
my $tiny = '128k';
{
    (my $c = $conf) =~ s/%%KEEP%%/1m/;
    $c =~ s/%%TINY%%/128k/;
    my $probe = WebhookSSE::Test->new(http => $c,
                                      expect_log => [qr/\[emerg\].*small/]);
    my ($ok, $out) = $probe->test_config;
    ok($ok, 'a 128k zone is accepted') or diag $out;
    $tiny = '256k' unless $ok;
}
$conf =~ s/%%TINY%%/$tiny/;

(my $c1 = $conf) =~ s/%%KEEP%%/1m/;
my $t = WebhookSSE::Test->new(http => $c1)->start;

my $FLOOD = 3000;
my $SESSIONS = 500;


# ----- flood a 128k zone --------------------------------------------------------

# Live streams during the flood: one for a "hot" session that gets every
# third message (far more than the zone holds), four for ordinary sessions.
my @live = map { $t->sse("/stream?sessionId=$_") }
           'hot', 'hot', map { "sess-$_" } 1 .. 4;
for (@live) { $_->wait_events(1, 5) or die "no connected event\n" }

my (%by_session, @flood_ids, $non200);
{
    my @bodies = map { { message => "flood $_ " . ('x' x 100),
                         sessionId => ($_ % 3 ? 'sess-' . ($_ % $SESSIONS)
                                              : 'hot'),
                         n => $_ } } 0 .. $FLOOD - 1;

    my @res;
    # a third on fresh connections (both workers), the rest pipelined
    for my $i (0 .. 999) {
        push @res, $t->publish('/pub', $bodies[$i]);
        WebhookSSE::SSE::pump_many(\@live, 0);
    }
    for (my $i = 1000; $i < $FLOOD; $i += 100) {
        push @res, $t->publish_pipelined('/pub', [ @bodies[$i .. $i + 99] ]);
        WebhookSSE::SSE::pump_many(\@live, 0);
    }

    my %status;
    $status{ $_->{status} }++ for @res;
    is_deeply(\%status, { 200 => $FLOOD },
              "tiny zone ($tiny): all $FLOOD publishes to $SESSIONS sessions "
              . "answered 200") or diag explain \%status;

    for my $i (0 .. $#res) {
        my $id = $res[$i]{json} && $res[$i]{json}{messageId} or next;
        push @flood_ids, $id;
        push @{ $by_session{ $bodies[$i]{sessionId} } }, $id;
    }

    my @seq = map { (id_parts($_))[1] } @flood_ids;
    is_deeply(\@seq, [ 1 .. $FLOOD ], 'tiny zone: ids stay consecutive');
}

{
    # every live subscriber got every message of its session, in order,
    # although the zone held only a fraction of them at any time
    for my $s (@live) {
        my ($sess) = $s->{path} =~ /sessionId=(.*)/;
        my $want = $by_session{$sess} // [];
        my @got = map { $_->{id} } $s->wait_events(scalar @$want, 10);
        is_deeply(\@got, $want, "tiny zone: live stream of $sess got all "
                                . scalar(@$want) . ' of its messages in '
                                . 'order')
            or diag 'got ' . scalar(@got) . ', first difference at '
                    . (grep({ ($got[$_] // '') ne $want->[$_] }
                            0 .. $#$want))[0];
    }
    $_->close for @live;
}

{
    my @noisy = grep { /\[(warn|error)\]/ } split /\n/, $t->error_log;
    ok(@noisy < 10, 'tiny zone: memory pressure does not flood the error '
                    . 'log (' . scalar(@noisy) . ' warn/error lines)')
        or diag join "\n", @noisy[0 .. 9];
}

{
    my @mine = map { $t->publish_ok('/pub', { message => "latest $_",
                                              sessionId => 'latest' }) }
               1 .. 5;
    my $rp = $t->stream_replay('/stream?sessionId=latest', '/pub',
                               { message => 'marker',
                                 sessionId => 'latest' });
    is_deeply([ map { $_->{id} } @{ $rp->{replay} } ], \@mine,
              'tiny zone: the latest messages of a session are replayable');
    is($rp->{replay}[0] && $rp->{replay}[0]{json}{message}, 'latest 1',
       'tiny zone: replayed payload intact');
    $rp->{stream}->close;

    my $last = 'sess-' . (($FLOOD - 1) % $SESSIONS);
    $rp = $t->stream_replay("/stream?sessionId=$last", '/pub',
                            { message => 'marker', sessionId => $last });
    my @got = map { $_->{id} } @{ $rp->{replay} };
    my %sent = map { $_ => 1 } @{ $by_session{$last} };
    ok(@got && $got[-1] eq $flood_ids[-1],
       'tiny zone: the last flood message is still replayable')
        or diag "got @got, last $flood_ids[-1]";
    ok(!grep({ !$sent{$_} } @got),
       'tiny zone: replay holds only that session\'s messages');
    my @s = map { (id_parts($_))[1] } @got;
    is_deeply(\@s, [ sort { $a <=> $b } @s ], 'tiny zone: replay in order');
    $rp->{stream}->close;
}

{
    my $r = $t->publish('/pub', { message => 'y' x (400 * 1024),
                                  sessionId => 'huge' });
    is($r->{status}, 503, "tiny zone ($tiny): a 400k message: 503");
    ok($r->{json} && !$r->{json}{success} && $r->{json}{error},
       'tiny zone: 503 is a JSON error') or diag substr $r->{body}, 0, 200;

    my $r2 = $t->publish('/pub', { message => 'after huge',
                                   sessionId => 'huge' });
    is($r2->{status}, 200, 'tiny zone: works again right after the 503');

    my $r3 = $t->publish('/pub', { message => 'z' x (30 * 1024),
                                   sessionId => 'big' });
    is($r3->{status}, 200, 'tiny zone: a 30k message fits (evicting '
                           . 'others)');
}


# ----- TTL ------------------------------------------------------------------------

{
    my $t0 = time;
    my $old = $t->publish_ok('/pubshort', { message => 'short-lived',
                                            sessionId => 'ttl2' });
    my $probes = 0;

    my $present = sub {
        $probes++;
        my $rp = $t->stream_replay('/streamshort?sessionId=ttl2',
                                   '/pubshort', { message => 'probe' });
        $rp->{stream}->close;
        return scalar grep { $_->{id} eq $old } @{ $rp->{replay} };
    };

    ok($present->(), 'ttl: message replayable right after publish');

    my $gone_at;
    while (time - $t0 < 5) {
        unless ($present->()) {
            $gone_at = time - $t0;
            last;
        }
        sleep 0.2;
    }

    ok(defined $gone_at, 'ttl: message with ttl=1s expires within 5 s');
    ok(defined $gone_at && $gone_at >= 0.9,
       'ttl: message is not expired before its ttl')
        or diag "gone after " . ($gone_at // 'never');
}


# ----- reload -----------------------------------------------------------------------

my ($a_id, $b_id);
{
    $a_id = $t->publish_ok('/pubkeep', { message => 'before reload',
                                         sessionId => 'k' });
    my @latest = map { $t->publish_ok('/pub', { message => "pre $_",
                                                sessionId => 'pre' }) }
                 1 .. 3;

    my @old = $t->reload;

    my $rp = $t->stream_replay('/streamkeep?sessionId=k', '/pubkeep',
                               { message => 'marker', sessionId => 'k' });
    is_deeply([ map { $_->{id} } @{ $rp->{replay} } ], [ $a_id ],
              'reload: retained message still replayed');
    $rp->{stream}->close;

    my ($ea, $sa) = id_parts($a_id);
    my ($em, $sm) = id_parts($rp->{marker});
    is($em, $ea, 'reload: same zone epoch after reload');
    is($sm, $sa + 1, 'reload: seq continues after reload');

    $rp = $t->stream_replay('/stream?sessionId=pre', '/pub',
                            { message => 'marker', sessionId => 'pre' });
    is_deeply([ map { $_->{id} } @{ $rp->{replay} } ], \@latest,
              'reload: tiny zone content survives too');
    $rp->{stream}->close;

    ok($t->wait_pids_gone(\@old, 5), 'reload: old workers exit');
    $b_id = $rp->{marker};
}

{
    # resizing a zone makes nginx create a new one: a new epoch, and an id
    # of the old zone gets a full replay instead of a gap
    (my $c2 = $conf) =~ s/%%KEEP%%/2m/;
    $t->set_config(http => $c2);
    $t->reload;

    my $c = $t->publish_ok('/pubkeep', { message => 'new zone',
                                         sessionId => 'k' });
    my ($ea) = id_parts($a_id);
    my ($ec, $sc) = id_parts($c);
    isnt($ec, $ea, 'resized zone: new epoch');
    is($sc, 1, 'resized zone: seq starts at 1 again');

    my $rp = $t->stream_replay('/streamkeep?sessionId=k', '/pubkeep',
                               { message => 'marker', sessionId => 'k' },
                               headers => { 'Last-Event-ID' => $a_id });
    is_deeply([ map { $_->{id} } @{ $rp->{replay} } ], [ $c ],
              'resized zone: old-epoch Last-Event-ID gets the full replay');
    $rp->{stream}->close;
}

finish();
