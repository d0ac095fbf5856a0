#!/usr/bin/perl

# Idempotent publishes: a retried POST with the same Idempotency-Key (or
# the same verified webhook-id / X-GitHub-Delivery) gets the first answer
# and is neither stored nor delivered again, also when the retries race on
# different workers.  webhook_idempotency sets the window, or turns it off.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256 hmac_sha256_hex);
use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $KEY = 'standard webhooks key';
my $WHSEC = 'whsec_' . encode_base64($KEY, '');

my $t = WebhookSSE::Test->new(workers => 2, http => <<"EOF");
    webhook_zone zone=chat:1m;

    log_format idem '\$pid \$status \$webhook_message_id';

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        access_log %%PREFIX%%/logs/access.log idem;

        location = /pub { webhook_publish chat; }
        location = /short {
            webhook_publish chat;
            webhook_idempotency 1s;
        }
        location = /off {
            webhook_publish chat;
            webhook_idempotency off;
        }
        location = /signed {
            webhook_publish chat;
            webhook_verify standard $WHSEC;
        }
        location = /github {
            webhook_publish chat;
            webhook_verify github "gh";
        }
        location = /to/session {
            webhook_publish chat;
            webhook_session "elsewhere";
        }

        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /status { webhook_status chat; }
        location = /pid { return 200 "\$pid"; }
    }
EOF

$t->start;

my $s = $t->sse('/stream?sessionId=idem');
$s->wait_events(1, 5);

sub with_key
{
    my ($path, $data, $key, %o) = @_;
    return $t->publish($path, $data,
                       headers => { 'Idempotency-Key' => $key,
                                    %{ $o{headers} // {} } });
}

# events(MARKER): the webhook messages that arrived up to a marker published
# last (so that anything published before it has had its chance).
sub events_until_marker
{
    my ($name) = @_;
    my $id = $t->publish_ok('/pub', { message => "marker $name",
                                      sessionId => 'idem' });
    my @ev = $s->wait_for_event($id, 5);
    return grep { ($_->{data} // '') !~ /"marker / } @ev;
}

sub status { $t->request('GET', '/status')->{json} }

# access log lines are written just after the answer: wait for "n" matches
sub log_lines
{
    my ($re, $n) = @_;
    my @l;
    wait_until(sub { @l = grep { $_ =~ $re } split /\n/, $t->access_log;
                     @l >= $n }, 10);
    return @l;
}

sub status_line
{
    my ($path, $body, $key) = @_;
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Timeout => 5)
        or die "connect: $!";
    print $c "POST $path HTTP/1.0\r\nContent-Type: application/json\r\n"
             . "Idempotency-Key: $key\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $line = <$c>;
    close $c;
    $line =~ s/\r?\n$//;
    return $line;
}

# --- retries with the same key --------------------------------------------

{
    my $msg = { message => 'pay once', sessionId => 'idem' };
    my @r = map { with_key('/pub', $msg, 'order-42') } 1 .. 3;

    is_deeply([map { $_->{status} } @r], [200, 200, 200],
              'same key 3 times: 200 each time');
    is(scalar(grep { $_->{json}{messageId} eq $r[0]{json}{messageId} } @r),
       3, 'same key: the same messageId each time');
    is(scalar(grep { $_->{json}{timestamp} == $r[0]{json}{timestamp} } @r),
       3, 'same key: the same timestamp each time');
    ok(!defined $r[0]{headers}{'idempotent-replayed'},
       'the first answer is not marked as replayed');
    is($r[1]{headers}{'idempotent-replayed'}, 'true',
       'a retry\'s answer carries Idempotent-Replayed: true');

    my @ev = events_until_marker('three retries');
    is(scalar @ev, 1, 'same key 3 times: one event on the stream');
    is($ev[0]{id}, $r[0]{json}{messageId}, 'the event has the first id');
    is(status()->{duplicates}, 2, 'webhook_status counts 2 duplicates');
    ok(status()->{idempotencyKeys} >= 1, 'webhook_status counts the key');

    my @log = log_lines(qr/ 200 \Q$r[0]{json}{messageId}\E$/, 3);
    is(scalar @log, 3, '$webhook_message_id is the first id in all three '
                       . 'access log lines');
}

{
    # the same key for another request is an error, not a silent replay
    with_key('/pub', { message => 'a', sessionId => 'idem' }, 'reused');
    my $r = with_key('/pub', { message => 'b', sessionId => 'idem' },
                     'reused');
    is($r->{status}, 422, 'same key, other body: 422');
    like($r->{json}{error} // '', qr/Idempotency-Key was used for a different/,
         'same key, other body: JSON error says why');
    is(status_line('/pub', json_encode({ message => 'c', sessionId => 'idem' }),
                   'reused'),
       'HTTP/1.1 422 Unprocessable Entity', '422 has its reason phrase');

    my $u = with_key('/to/session', { message => 'a' }, 'reused');
    is($u->{status}, 422, 'same key and body to another session: 422');

    my @ev = events_until_marker('reuse');
    is(scalar @ev, 1, 'only the first of the reused key was delivered');
}

{
    my $a = with_key('/pub', { message => 'k1', sessionId => 'idem' }, 'k1');
    my $b = with_key('/pub', { message => 'k1', sessionId => 'idem' }, 'k2');
    isnt($a->{json}{messageId}, $b->{json}{messageId},
         'different keys, same body: two messages');
    my @ev = events_until_marker('two keys');
    is(scalar @ev, 2, 'different keys: two events');
}

for my $bad (['', 'empty'], ['x' x 256, '256 characters'],
             ["tab\tkey", 'a control character'])
{
    my $r = with_key('/pub', { message => 'bad key', sessionId => 'idem' },
                     $bad->[0]);
    is($r->{status}, 400, "Idempotency-Key $bad->[1]: 400");
    like($r->{json}{error} // '', qr/Idempotency-Key must be/,
         "Idempotency-Key $bad->[1]: JSON error");
}

is(with_key('/pub', { message => 'long ok', sessionId => 'idem' },
            'k' x 255)->{status}, 200, 'Idempotency-Key of 255: 200');

# --- off, and the window ----------------------------------------------------

{
    my @r = map { with_key('/off', { message => 'off', sessionId => 'idem' },
                           'off-key') } 1 .. 2;
    isnt($r[0]{json}{messageId}, $r[1]{json}{messageId},
         'webhook_idempotency off: each POST is a new message');
    events_until_marker('off');
}

{
    my $msg = { message => 'window', sessionId => 'idem' };
    # before the first POST: the key's window starts when the worker
    # reads it, which is later, however slow the answer
    my $start = time;
    my $first = with_key('/short', $msg, 'window-key');
    my $again = with_key('/short', $msg, 'window-key');
    is($again->{json}{messageId}, $first->{json}{messageId},
       'within a 1s window: the retry is answered from the key')
        if time - $start < 0.9;

    # once the window ends the key is forgotten: the next POST is new
    my $later;
    wait_until(sub {
        $later = with_key('/short', $msg, 'window-key');
        $later->{json}{messageId} ne $first->{json}{messageId};
    }, 5);
    isnt($later->{json}{messageId}, $first->{json}{messageId},
         'after the window: a new message');
    ok(time - $start >= 0.9, 'the key lasted about its window');

    my @ev = events_until_marker('window');
    my %ids = map { $_->{id} => 1 } @ev;
    is(scalar keys %ids, 2, 'window: exactly two events (first, after '
                            . 'expiry)');
}

# --- the sender's delivery ids are keys too --------------------------------

{
    my $body = json_encode({ message => 'svix retry', sessionId => 'idem' });
    my @r;
    for my $attempt (0 .. 2) {
        # each attempt is signed anew with its own timestamp
        my $ts = int(time) - 100 + $attempt * 30;
        my $sig = 'v1,' . encode_base64(hmac_sha256("msg_77.$ts.$body", $KEY),
                                        '');
        push @r, $t->publish('/signed', $body,
                             headers => { 'webhook-id' => 'msg_77',
                                          'webhook-timestamp' => $ts,
                                          'webhook-signature' => $sig });
    }
    is(scalar(grep { $_->{status} == 200 } @r), 3,
       'signed delivery retried 3 times: 200 each time');
    is(scalar(grep { $_->{json}{messageId} eq $r[0]{json}{messageId} } @r),
       3, 'signed retries: one messageId');
    is(scalar(events_until_marker('signed')), 1,
       'signed retries (same webhook-id): one event');
}

{
    my $body = json_encode({ message => 'gh redelivery', sessionId => 'idem' });
    my $sig = 'sha256=' . hmac_sha256_hex($body, 'gh');
    my @r = map {
        $t->publish('/github', $body,
                    headers => { 'X-Hub-Signature-256' => $sig,
                                 'X-GitHub-Delivery' => 'd-1' })
    } 1 .. 2;
    is($r[1]{json}{messageId}, $r[0]{json}{messageId},
       'GitHub redelivery (same X-GitHub-Delivery): same messageId');
    is(scalar(events_until_marker('github')), 1, 'GitHub redelivery: one '
                                                 . 'event');
}

{
    # an unverified webhook-id is not trusted as a key
    my @r = map {
        $t->publish('/pub', { message => 'unsigned', sessionId => 'idem' },
                    headers => { 'webhook-id' => 'msg_unsigned' })
    } 1 .. 2;
    isnt($r[0]{json}{messageId}, $r[1]{json}{messageId},
         'webhook-id without webhook_verify is not a key');
    events_until_marker('unsigned');
}

# --- with webhook_verify the signed delivery id is the only key -----------

sub signed
{
    my ($body, $id, %o) = @_;
    my $ts = $o{ts} // int(time);
    my $sig = 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", $KEY), '');
    my $idn = $o{svix} ? 'svix-id' : 'webhook-id';
    my $tsn = $o{svix} ? 'svix-timestamp' : 'webhook-timestamp';
    my $sgn = $o{svix} ? 'svix-signature' : 'webhook-signature';
    return $t->request('POST', '/signed', body => $body,
                       headers => [ 'Content-Type' => 'application/json',
                                    $idn => $id, $tsn => $ts, $sgn => $sig,
                                    @{ $o{headers} // [] } ]);
}

{
    # a captured request sent again with a fresh Idempotency-Key
    my $body = json_encode({ message => 'captured', sessionId => 'idem' });
    my $first = signed($body, 'msg_captured',
                       headers => [ 'Idempotency-Key' => 'first' ]);
    is($first->{status}, 200, 'captured signed request: 200 the first time');
    my $again = signed($body, 'msg_captured',
                       headers => [ 'Idempotency-Key' => 'fresh-key' ]);
    is($again->{json}{messageId}, $first->{json}{messageId},
       'replayed with a fresh Idempotency-Key: the first messageId');
    is($again->{headers}{'idempotent-replayed'}, 'true',
       'replayed with a fresh Idempotency-Key: answered as a replay');
    is(scalar(events_until_marker('captured')), 1,
       'replayed with a fresh Idempotency-Key: one event');

    # the header name as the client wrote it does not matter
    my $none = signed($body, 'msg_captured');
    is($none->{headers}{'idempotent-replayed'}, 'true',
       'replayed without Idempotency-Key: a replay');
    events_until_marker('captured 2');
}

{
    my $body = json_encode({ message => 'long id', sessionId => 'idem' });
    my $r = signed($body, 'm' x 256);
    is($r->{status}, 400, 'signed webhook-id of 256 bytes: 400');
    is($r->{json}{error} // '', 'webhook-id must be at most 255 bytes',
       'the 400 names webhook-id');
    is(signed($body, 'm' x 255)->{status}, 200,
       'signed webhook-id of 255 bytes: 200');
    my $s256 = signed($body, 's' x 256, svix => 1);
    is($s256->{json}{error} // '', 'svix-id must be at most 255 bytes',
       'the 400 names svix-id when that was sent');
    events_until_marker('long id');
}

{
    # one delivery id for two different signed bodies
    signed(json_encode({ message => 'one', sessionId => 'idem' }), 'msg_two',
           svix => 1);
    my $r = signed(json_encode({ message => 'two', sessionId => 'idem' }),
                   'msg_two', svix => 1);
    is($r->{status}, 422, 'a signed id reused for another body: 422');
    is($r->{json}{error} // '', 'this svix-id was used for a different request',
       'the 422 names svix-id, not Idempotency-Key');

    my $gh1 = json_encode({ message => 'gh one', sessionId => 'idem' });
    my $gh2 = json_encode({ message => 'gh two', sessionId => 'idem' });
    my @r = map {
        $t->publish('/github', $_,
                    headers => { 'X-Hub-Signature-256' =>
                                     'sha256=' . hmac_sha256_hex($_, 'gh'),
                                 'X-GitHub-Delivery' => 'd-reused' })
    } $gh1, $gh2;
    is($r[1]{json}{error} // '',
       'this X-GitHub-Delivery was used for a different request',
       'the 422 names X-GitHub-Delivery');
    events_until_marker('reused ids');
}

{
    # control bytes of a delivery id are escaped in error_log
    my $body = json_encode({ message => 'esc id', sessionId => 'idem' });
    my $id = "msg\x1b[31mred\x01";
    signed($body, $id) for 1 .. 2;
    my $line = $t->wait_error_log(qr/repeated with webhook-id "msg\\/, 5);
    like($line // '', qr/"msg\\x1B\[31mred\\x01"/,
         'the replayed delivery id is logged escaped');
    unlike($t->error_log, qr/[\x01\x1b]/,
           'no control byte of a delivery id reached error_log');
    events_until_marker('esc id');
}

# --- racing retries on two workers -----------------------------------------

# A keep-alive connection, and the pid of the worker that accepted it.
sub pinned_connection
{
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp',
                                  Timeout => 5)
        or die "connect: $!";
    syswrite $c, "GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n";

    my ($buf, $sel, $deadline) = ('', IO::Select->new($c), time + 10);
    until ($buf =~ /\r\n\r\n(\d+)\z/) {
        die "GET /pid: no answer in 10 s: $buf\n"
            if time > $deadline || !$sel->can_read($deadline - time);
        sysread($c, $buf, 4096, length $buf) or die "GET /pid: closed\n";
    }
    my ($pid) = $buf =~ /(\d+)\z/;
    return ($c, $pid);
}

{
    # Which worker accepts a connection is up to the kernel (reuseport
    # hashes the source port; on a busy machine one worker may take
    # every connection).  So the spread is made, not hoped for: keep-alive
    # connections are opened, each asking which worker holds it, until
    # each worker holds half of them (bounded); then the retries go out
    # on all of them at once.
    my $n = 24;
    my (%held, $tries);
    while (grep({ @{ $held{$_} // [] } < $n / 2 } $t->worker_pids)
           && ++$tries <= 400)
    {
        my ($c, $pid) = pinned_connection();
        if (@{ $held{$pid} // [] } < $n / 2) {
            push @{ $held{$pid} }, $c;
        } else {
            close $c;
        }
    }
    is_deeply([map { scalar @{ $held{$_} // [] } } $t->worker_pids],
              [$n / 2, $n / 2],
              "$n keep-alive connections, half on each worker "
              . "($tries connects)")
        or diag explain { map { $_ => scalar @{ $held{$_} } } keys %held };

    my $body = json_encode({ message => 'race', sessionId => 'idem' });
    my $req = "POST /pub HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Content-Type: application/json\r\nIdempotency-Key: race\r\n"
              . "Content-Length: " . length($body) . "\r\n\r\n$body";

    my @socks = map { @$_ } values %held;

    # all the connections are held first, then all requests go at once
    syswrite $_, $req for @socks;

    my %out;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + 10;
    while ($sel->count && time < $deadline) {
        for my $fh ($sel->can_read(1)) {
            my $got = sysread $fh, $out{$fh}, 65536, length($out{$fh} // '');
            next if $got;
            # closed as an HTTP client closes after Connection: close:
            # on a reused keep-alive connection nginx answers with a
            # lingering close and logs the request only when the client
            # closes, or after lingering_timeout (5 s)
            $sel->remove($fh);
            close $fh;
        }
    }

    my %ids;
    for my $fh (@socks) {
        my ($id) = ($out{$fh} // '') =~ /"messageId":"([^"]+)"/;
        $ids{$id // 'none'}++;
    }
    is_deeply([keys %ids], [grep { $_ ne 'none' } keys %ids],
              "$n racing retries: every one answered 200 with an id");
    is(scalar keys %ids, 1, "$n racing retries: one messageId for all");

    my %pids;
    for (log_lines(qr/^\d+ 200 \Q@{[keys %ids]}\E$/, $n)) {
        my ($pid, $id) = /^(\d+) 200 (\S+)$/ or next;
        $pids{$pid}++ if exists $ids{$id};
    }
    is_deeply(\%pids, { map { $_ => $n / 2 } $t->worker_pids },
              'the racing retries were served by both workers, each on '
              . 'the connections it held') or diag explain \%pids;

    is(scalar(events_until_marker('race')), 1, 'racing retries: one event');
}

# --- keys under memory pressure --------------------------------------------

{
    # far more keys than the 1m zone holds beside its messages: the oldest
    # go, publishing never fails, the zone stays consistent
    my $fails = 0;
    for my $i (1 .. 3000) {
        my $r = with_key('/pub', { message => 'p' x 200, sessionId => "p$i" },
                         sprintf('pressure-%06d-%s', $i, 'z' x 150));
        $fails++ unless $r->{status} == 200;
    }
    is($fails, 0, '3000 keyed publishes into a small zone: all 200');
    my $st = status();
    ok($st->{idempotencyKeys} < 3000, 'old keys were evicted under pressure '
                                      . "($st->{idempotencyKeys} kept)");
    ok($st->{idempotencyKeys} > 0, 'recent keys are kept');

    my $r = with_key('/pub', { message => 'p' x 200, sessionId => 'p3000' },
                     sprintf('pressure-%06d-%s', 3000, 'z' x 150));
    is($r->{headers}{'idempotent-replayed'}, 'true',
       'the newest key is still remembered');
}

$s->close;

finish();
