#!/usr/bin/perl

# webhook_stream_buffer: a client that stops reading is closed once its
# unsent output passes the limit (error_log "webhook stream too slow"),
# a client that lags less is not, a normal stream alongside receives
# everything, and the closed client resumes by Last-Event-ID without loss.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=1000;

    server {
        listen 127.0.0.1:%%PORT%% sndbuf=16k;

        location = /pub { webhook_publish chat; }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_stream_buffer 64k;
        }
    }
EOF

my $PAYLOAD = 'p' x 4000;

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : undef;
}

my $normal = $t->sse('/stream?sessionId=s');
$normal->wait_events(1, 5) or die "no connected event\n";

my @ids;

# Publishes $n messages of 4k, each once the normal stream has the one
# before: the normal client is a prompt reader whatever the scheduling.
# (Publishing on while it lags, as before, let its worker, when
# descheduled for a moment, fetch a burst of 35 and more messages at
# once, which then counted as its unsent output: it was closed as "too
# slow" with 141136 bytes unsent, in run 4 of 20 with a CPU hog.)
sub publish_some
{
    my ($n) = @_;
    for (1 .. $n) {
        my $id = $t->publish_ok('/pub', { message => $PAYLOAD,
                                          sessionId => 's',
                                          n => scalar @ids });
        push @ids, $id;
        WebhookSSE::SSE::wait_all([ $normal ], sub {
            grep { ($_->{id} // '') eq $id } @{ $_[0]{events} } }, 10)
            or die "the normal stream did not get $id in 10 s\n";
    }
}


# ----- lagging within the limit is fine --------------------------------------

{
    my $lag = $t->sse('/stream?sessionId=s', rcvbuf => 4096);
    $lag->wait_events(1, 5);
    my $from = @ids;

    # ~40k: more than the socket buffers, less than them plus 64k
    publish_some(10);

    my @ev = $lag->wait_events(10, 5);
    is(scalar @ev, 10, 'lagging 40k behind: every event arrives once the '
                       . 'client reads');
    is_deeply([ map { $_->{id} } @ev ], [ @ids[$from .. $#ids] ],
              'lagging 40k behind: in order');
    ok(!$lag->{closed}, 'lagging 40k behind: not closed');
    unlike($t->error_log, qr/webhook stream too slow/,
           'lagging 40k behind: no "too slow" line');
    $lag->close;
}


# ----- a client that never reads ----------------------------------------------

my $slow = $t->sse('/stream?sessionId=s', rcvbuf => 4096);
$slow->wait_events(1, 5);
my $first_slow = @ids;

# ~600k, far past 64k plus socket buffers; the normal stream keeps reading
publish_some(150);

my $line = $t->wait_error_log(qr/webhook stream too slow/, 5);
ok($line, 'never-reading client: error_log says "webhook stream too slow"')
    or diag $t->_log_tail;
unlike($line // '', qr/\[(alert|crit|emerg)\]/,
       'never-reading client: logged below alert level');

ok(wait_until(sub { (active() // -1) == 1 }, 5),
   'never-reading client: no longer counted in activeConnections')
    or diag 'activeConnections: ' . (active() // 'undef');

ok($slow->is_closed(10), 'never-reading client: its connection is closed');

my @got_slow = map { $_->{id} } $slow->wait_events(1000, 0);
ok(@got_slow < 150, 'never-reading client: got only part ('
                    . scalar(@got_slow) . ' of 150) before being closed');
is_deeply(\@got_slow, [ @ids[$first_slow .. $first_slow + $#got_slow] ],
          'never-reading client: what it got is a prefix, in order');

{
    my @ev = $normal->wait_events(scalar @ids, 10);
    is_deeply([ map { $_->{id} } @ev ], \@ids,
              'normal stream alongside: received all ' . scalar(@ids)
              . ' messages in order');
    ok(!$normal->{closed}, 'normal stream alongside: still open');
    is($ev[-1]{json} && length $ev[-1]{json}{message}, 4000,
       'normal stream alongside: payload intact');
}

{
    # the browser reconnects with the last id it saw and loses nothing
    my $last = @got_slow ? $got_slow[-1] : undef;
    # (the replay, 570k, is larger than webhook_stream_buffer: it must be
    # paced by the client's reading, not count as a slow client)
    my $rp = eval {
        $t->stream_replay('/stream?sessionId=s', '/pub',
                          { message => 'marker', sessionId => 's' },
                          headers => { defined $last
                                       ? ('Last-Event-ID' => $last) : () });
    };
    ok($rp, 'resume with a replay larger than webhook_stream_buffer: '
            . 'stream stays open until the marker') or diag $@;

    my @resumed = $rp ? map { $_->{id} } @{ $rp->{replay} } : ();
    my $from = $first_slow + @got_slow;
    is_deeply(\@resumed, [ @ids[$from .. $#ids] ],
              'closed client resumes by Last-Event-ID: exactly the '
              . (@ids - $from) . ' messages it missed')
        or diag 'got ' . scalar(@resumed) . ' events';
    $rp->{stream}->close if $rp;

    my @slow_lines = grep { /webhook stream too slow/ }
                     split /\n/, $t->error_log;
    is(scalar @slow_lines, 1, 'only the never-reading client was "too '
                              . 'slow"') or diag join "\n", @slow_lines;
}

$normal->close;

finish();
