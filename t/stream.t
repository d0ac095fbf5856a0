#!/usr/bin/perl

# GET /api/webhook/stream: headers, the connected event, targeted versus
# broadcast delivery, replay (last N, Last-Event-ID header, lastEventId
# argument, unknown/evicted/other-epoch ids), JSON escaping that keeps SSE
# framing intact, errors, heartbeats.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m history=100;
    webhook_zone zone=small:1m history=3;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub      { webhook_publish chat; }
        location = /stream   { webhook_stream chat; }
        location = /stream3  { webhook_stream chat; webhook_replay 3; }
        location = /stream0  { webhook_stream chat; webhook_replay 0; }
        location = /hb       { webhook_stream chat; webhook_heartbeat 1s;
                               webhook_replay 0; }
        # six intervals: more than a worker's heartbeat lanes (4)
        location = /hb1 { webhook_stream chat; webhook_replay 0;
                          webhook_heartbeat 1100ms; }
        location = /hb2 { webhook_stream chat; webhook_replay 0;
                          webhook_heartbeat 1200ms; }
        location = /hb3 { webhook_stream chat; webhook_replay 0;
                          webhook_heartbeat 1300ms; }
        location = /hb4 { webhook_stream chat; webhook_replay 0;
                          webhook_heartbeat 1400ms; }
        location = /hb5 { webhook_stream chat; webhook_replay 0;
                          webhook_heartbeat 1500ms; }
        location = /conv     { webhook_stream chat;
                               webhook_session_field conversation_id; }
        location ~ ^/sse/([^/]+)$ {
            webhook_stream chat;
            webhook_session $1;
        }

        location = /pubsmall    { webhook_publish small; }
        location = /streamsmall { webhook_stream small; }
    }
EOF

# What was published to zone "chat": [id, session or undef], in order.
my @pub;

sub pub
{
    my ($data) = @_;
    my $id = $t->publish_ok('/pub', $data);
    push @pub, [ $id, $data->{sessionId} ];
    return $id;
}

sub seq_of { (id_parts($_[0]))[1] // 0 }

# Ids a stream of $session should get after $after (an id, or undef).
sub expected
{
    my ($session, $after) = @_;
    my $from = defined $after ? seq_of($after) : 0;
    return map { $_->[0] }
           grep { (!defined $_->[1]
                   || (defined $session && $_->[1] eq $session))
                  && seq_of($_->[0]) > $from } @pub;
}

# The replay a fresh stream gets: ids of the events before a marker.
sub replay_ids
{
    my ($path, $session, %opt) = @_;
    my $rp = $t->stream_replay($path, '/pub',
                               { message => 'marker', sessionId => $session },
                               %opt);
    push @pub, [ $rp->{marker}, $session ];
    $rp->{stream}->close;
    return [ map { $_->{id} // 'no-id' } @{ $rp->{replay} } ];
}

sub last_n
{
    my ($n, @l) = @_;
    return @l > $n ? @l[-$n .. -1] : @l;
}


# ----- headers and the connected event ---------------------------------------

{
    my $s = $t->sse('/stream?sessionId=alpha');

    is($s->{status}, 200, 'stream: 200');
    like($s->{headers}{'content-type'} // '', qr{^text/event-stream},
         'stream: Content-Type text/event-stream');
    is($s->{headers}{'cache-control'}, 'no-cache',
       'stream: Cache-Control no-cache');
    is($s->{headers}{'x-accel-buffering'}, 'no',
       'stream: X-Accel-Buffering no');
    ok(!defined $s->{headers}{'content-length'},
       'stream: no Content-Length');

    my ($c) = $s->wait_events(1, 5);
    ok($c, 'stream: an event arrives at once');
    is($s->{lines}[0], 'retry: 2000', 'stream: first line is "retry: 2000"');
    is($c->{data}, '{"type":"connected","sessionId":"alpha"}',
       'stream: connected event data exactly {"type":"connected",'
       . '"sessionId":"alpha"}');
    ok(!defined $c->{id} && !defined $c->{last_id},
       'stream: connected event carries no id');
    is(scalar(grep { $_->[0] eq 'data' } @{ $c->{fields} }), 1,
       'stream: connected event is one data line');
    $s->close;
}

{
    my $s = $t->sse('/stream');
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{data}, '{"type":"connected","sessionId":null}',
       'stream without session: "sessionId":null');
    $s->close;
}

{
    my $s = $t->sse('/conv?sessionId=c1');
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{data}, '{"type":"connected","conversation_id":"c1"}',
       'stream: connected event uses the configured session field name');
    $s->close;
}

{
    my $s = $t->sse('/sse/pathsess');
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{json} && $c->{json}{sessionId}, 'pathsess',
       'stream: webhook_session $1 takes the session from the path');
    my $id = pub({ message => 'to path session', sessionId => 'pathsess' });
    my @ev = $s->wait_for_event($id, 5);
    ok(@ev, 'stream: webhook_session $1 stream receives its session\'s '
            . 'message');
    $s->close;
}


# ----- targeted versus broadcast ----------------------------------------------

{
    my $a  = $t->sse('/stream0?sessionId=a');
    my $a2 = $t->sse('/stream0?sessionId=a');
    my $b  = $t->sse('/stream0?sessionId=b');
    my $n  = $t->sse('/stream0');
    my @all = ($a, $a2, $b, $n);

    for my $s (@all) {
        my ($c) = $s->wait_events(1, 5);
        die "no connected event" unless $c;
    }

    my $m1 = pub({ message => 'for a', sessionId => 'a' });
    my $m2 = pub({ message => 'for everyone' });
    my $m3 = pub({ message => 'for b', sessionId => 'b' });
    my $m4 = pub({ message => 'for everyone again' });

    my %want = (a => [ $m1, $m2, $m4 ], a2 => [ $m1, $m2, $m4 ],
                b => [ $m2, $m3, $m4 ], none => [ $m2, $m4 ]);
    my %s = (a => $a, a2 => $a2, b => $b, none => $n);

    for my $k (sort keys %s) {
        my @ev = $s{$k}->wait_for_event($m4, 5);
        is_deeply([ map { $_->{id} } @ev ], $want{$k},
                  "live: stream '$k' gets exactly its session's messages "
                  . "and broadcasts, in order");
    }

    # the last broadcast came after the targeted ones, so nothing else can
    # still be in flight to a stream
    ok(!grep({ $_->pending_events } @all),
       'live: no stray events after the final broadcast');

    $_->close for @all;
}


# ----- event shape --------------------------------------------------------------

{
    my $s = $t->sse('/stream0?sessionId=shape');
    $s->wait_events(1, 5);

    my $r = $t->publish('/pub', {
        message => 'hello', sessionId => 'shape', type => 'evil',
        messageId => 'fake', timestamp => 1,
        content_type => 'card',
        content_attributes => { items => [ 1, 'two', { three => 3 } ],
                                ok => JSON::PP::true(), none => undef },
    });
    is($r->{status}, 200, 'shape: publish accepted');
    push @pub, [ $r->{json}{messageId}, 'shape' ];

    my ($e) = $s->wait_events(1, 5);
    ok($e, 'shape: event received');
    is($e->{id}, $r->{json}{messageId}, 'shape: id line is the messageId');
    is(scalar(grep { $_->[0] eq 'data' } @{ $e->{fields} }), 1,
       'shape: one data line');
    is(scalar(grep { $_->[0] eq 'id' } @{ $e->{fields} }), 1,
       'shape: one id line');

    my $j = $e->{json} // {};
    is($j->{type}, 'webhook_message', 'shape: type webhook_message');
    is($j->{messageId}, $r->{json}{messageId},
       'shape: messageId the publish answered');
    is($j->{timestamp}, $r->{json}{timestamp},
       'shape: timestamp the publish answered');
    is($j->{message}, 'hello', 'shape: message');
    is($j->{sessionId}, 'shape', 'shape: sessionId');
    is($j->{content_type}, 'card', 'shape: other fields kept');
    is_deeply($j->{content_attributes},
              { items => [ 1, 'two', { three => 3 } ],
                ok => JSON::PP::true(), none => undef },
              'shape: nested rich content kept intact');
    like($e->{data}, qr/^\{"type":"webhook_message","messageId":/,
         'shape: data starts with type then messageId');
    for my $k (qw(type messageId timestamp)) {
        my $n = () = $e->{data} =~ /"$k":/g;
        is($n, 1, "shape: posted \"$k\" does not duplicate the key");
    }
    $s->close;
}


# ----- replay -------------------------------------------------------------------

{
    my @ids = map { pub({ message => "r$_", sessionId => 'rep' }) } 1 .. 7;

    my @exp5 = last_n(5, expected('rep'));
    is_deeply(replay_ids('/stream?sessionId=rep', 'rep'), \@exp5,
              'replay: fresh stream gets the last 5 retained (default)');

    my @exp3 = last_n(3, expected('rep'));
    is_deeply(replay_ids('/stream3?sessionId=rep', 'rep'), \@exp3,
              'replay: webhook_replay 3 gives the last 3');

    is_deeply(replay_ids('/stream0?sessionId=rep', 'rep'), [],
              'replay: webhook_replay 0 gives none');

    # a broadcast in between is merged in order
    my $bc = pub({ message => 'broadcast between' });
    my $r8 = pub({ message => 'r8', sessionId => 'rep' });

    my $after = $ids[0];
    my @want = expected('rep', $after);
    ok(@want > 5, 'replay: more than 5 messages after the id (setup)');

    is_deeply(replay_ids('/stream?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => $after }),
              \@want,
              'replay: Last-Event-ID gives every retained message after it, '
              . 'broadcasts merged, in order, not capped by webhook_replay');

    @want = expected('rep', $ids[4]);
    is_deeply(replay_ids("/stream?sessionId=rep&lastEventId=$ids[4]",
                         'rep'),
              \@want, 'replay: lastEventId argument works like the header');

    @want = expected('rep', $bc);
    is_deeply(replay_ids('/stream3?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => $bc }),
              \@want, 'replay: Last-Event-ID of a broadcast message');

    my $last = $pub[-1][0];
    is_deeply(replay_ids('/stream?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => $last }),
              [], 'replay: Last-Event-ID of the newest message: nothing');

    my ($epoch, $seq) = id_parts($ids[3]);
    my $other = ($epoch + 1000) . "-$seq";
    @want = expected('rep');
    is_deeply(replay_ids('/stream?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => $other }),
              [ @want ],
              'replay: id of another epoch gives the full retained replay');

    @want = expected('rep');
    is_deeply(replay_ids('/stream?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => 'garbage' }),
              [ @want ], 'replay: unparsable id gives the full replay');

    @want = expected('rep');
    is_deeply(replay_ids('/stream?sessionId=rep', 'rep',
                         headers => { 'Last-Event-ID' => "$epoch-0" }),
              [ @want ], 'replay: id before the first message (seq 0) '
                         . 'gives the full replay');
}

{
    # zone "small" keeps 3 per channel
    my @ids = map { $t->publish_ok('/pubsmall',
                                   { message => "e$_", sessionId => 'ev' }) }
              1 .. 6;

    my $rp = $t->stream_replay('/streamsmall?sessionId=ev', '/pubsmall',
                               { message => 'mk', sessionId => 'ev' },
                               headers => { 'Last-Event-ID' => $ids[0] });
    is_deeply([ map { $_->{id} } @{ $rp->{replay} } ], [ @ids[3 .. 5] ],
              'replay: evicted Last-Event-ID gives every retained message');
    $rp->{stream}->close;

    $rp = $t->stream_replay('/streamsmall?sessionId=ev', '/pubsmall',
                            { message => 'mk2', sessionId => 'ev' },
                            headers => { 'Last-Event-ID' => $ids[4] });
    my @got = map { $_->{id} } @{ $rp->{replay} };
    is($got[0], $ids[5], 'replay: retained Last-Event-ID resumes right '
                         . 'after it');
    is(scalar @got, 2, 'replay: ... with the newer messages only '
                       . '(e6 and the first marker)');
    $rp->{stream}->close;
}


# ----- escaping -----------------------------------------------------------------

{
    my $sid = 'q"u\\o<t>e';
    my $s = $t->sse("/stream0?sessionId=$sid");
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{json} && $c->{json}{sessionId}, $sid,
       'escaping: quotes and backslash in the session are JSON-escaped in '
       . 'the connected event') or diag $c && $c->{data};

    my $evil = "line1\n\ndata: injected\r\nid: 666\rretry: 1\n\nevent: x\n"
               . "\x{2028}\x{e9}\x{1F600} \"q\" \\ \t end";
    my $r = $t->publish('/pub', { message => $evil, sessionId => $sid,
                                  extra => "x\ny" });
    is($r->{status}, 200, 'escaping: message with newlines and SSE field '
                          . 'names accepted');
    push @pub, [ $r->{json}{messageId}, $sid ];

    my $nul = $t->publish('/pub', '{"message":"nul\u0000here","sessionId":'
                                  . JSON::PP->new->encode($sid) . '}');
    is($nul->{status}, 200, 'escaping: escaped \u0000 inside a message '
                            . 'accepted (valid JSON)');
    push @pub, [ $nul->{json}{messageId}, $sid ];

    my @ev = $s->wait_for_event($nul->{json}{messageId}, 5);
    is(scalar @ev, 2, 'escaping: exactly two events, nothing injected');
    is($ev[0]{json} && $ev[0]{json}{message}, $evil,
       'escaping: message arrives intact');
    is($ev[0]{json} && $ev[0]{json}{extra}, "x\ny",
       'escaping: other fields escaped too');
    is($ev[0]{id}, $r->{json}{messageId}, 'escaping: id not overridden');
    is($ev[1] && $ev[1]{json} && $ev[1]{json}{message}, "nul\0here",
       'escaping: NUL arrives as \u0000');
    is_deeply($s->{retry}, [2000], 'escaping: no retry injected');
    ok(!$s->{unknown}, 'escaping: no unknown SSE fields on the wire')
        or diag explain $s->{unknown};
    is($s->{last_id}, $nul->{json}{messageId},
       'escaping: last event id is the last messageId');
    ok(utf8::decode(my $copy = $s->{body_raw}), 'escaping: stream is '
                                                . 'valid UTF-8');
    $s->close;
}


# ----- a large message ------------------------------------------------------------

{
    my $s = $t->sse('/stream0?sessionId=large');
    $s->wait_events(1, 5);
    my $text = join '', map { chr(32 + $_ % 90) } 1 .. 100_000;
    my $id = pub({ message => $text, sessionId => 'large' });
    my @ev = $s->wait_for_event($id, 10);
    is(scalar @ev, 1, 'large: a 100k message arrives live as one event');
    ok(@ev && $ev[0]{json} && $ev[0]{json}{message} eq $text,
       'large: payload intact');
    is(@ev && scalar(grep { $_->[0] eq 'data' } @{ $ev[0]{fields} }), 1,
       'large: one data line');
    $s->close;

    my $r = replay_ids('/stream?sessionId=large', 'large',
                       headers => { 'Last-Event-ID' => $pub[-2][0] });
    is_deeply($r, [ $id ], 'large: and replays');
}


# ----- errors ---------------------------------------------------------------------

{
    my $s = $t->sse('/stream?sessionId=' . ('x' x 257));
    is($s->{status}, 400, 'stream: session over 256 bytes: 400');
    $s->wait_response(5);
    my $j = $s->json;
    ok($j && ref $j eq 'HASH' && !$j->{success} && $j->{error},
       'stream: 400 error is JSON') or diag $s->body;
    $s->close;

    my $ok = $t->sse('/stream?sessionId=' . ('x' x 256));
    is($ok->{status}, 200, 'stream: session of 256 bytes: 200');
    $ok->close;

    for my $m (qw(POST PUT DELETE)) {
        my $r = $t->request($m, '/stream?sessionId=a',
                            headers => { 'Content-Type'
                                         => 'application/json' },
                            body => '{"message":"x"}');
        is($r->{status}, 405, "stream: $m is 405");
    }
}


# ----- heartbeat ------------------------------------------------------------------

{
    my $s = $t->sse('/hb?sessionId=hb');
    $s->wait_events(1, 5);
    my $t0 = time;
    my $c1 = $s->wait_comment(3);
    my $t1 = time;
    my $c2 = $s->wait_comment(3);
    my $t2 = time;
    is($c1, 'heartbeat', 'heartbeat: ": heartbeat" within 3 s with 1s');
    is($c2, 'heartbeat', 'heartbeat: and again');
    ok($t2 - $t1 > 0.5, 'heartbeat: not more often than the interval')
        or diag sprintf "%.2f s apart", $t2 - $t1;
    ok(!$s->{closed}, 'heartbeat: stream still open');

    # a message still arrives between heartbeats
    my $id = pub({ message => 'after hb', sessionId => 'hb' });
    my @ev = $s->wait_for_event($id, 5);
    ok(@ev == 1, 'heartbeat: messages still flow');
    $s->close;

    my $d = $t->sse('/stream0?sessionId=nohb');
    $d->wait_events(1, 5);
    ok(!defined $d->wait_comment(1.5),
       'heartbeat: default (30s) sends none within 1.5 s');
    $d->close;
}


# Heartbeats of one interval share a lane (one timer per worker), the
# lanes are limited and other intervals keep their own timers: each stream
# gets its heartbeats at its own interval, and one leaving its lane does
# not stop the others.
{
    my @paths = ('/hb', '/hb', '/hb', '/hb1', '/hb2', '/hb3', '/hb4', '/hb5');
    my @s = map { $t->sse("$paths[$_]?sessionId=lane$_") } 0 .. $#paths;
    $_->wait_events(1, 5) for @s;

    $s[0]->close;

    # read all of them at once, noting when each heartbeat arrives
    my %at;
    my $deadline = time + 8;

    while (time < $deadline) {
        for my $i (1 .. $#s) {
            $s[$i]->pump(0.01);
            my $n = grep { $_ eq 'heartbeat' } @{ $s[$i]{comments} };
            push @{ $at{$i} }, time while @{ $at{$i} // [] } < $n;
        }

        last unless grep { @{ $at{$_} // [] } < 3 } 1 .. $#s;
    }

    for my $i (1 .. $#s) {
        my @t = @{ $at{$i} // [] };
        my ($gap) = sort { $a <=> $b } map { $t[$_] - $t[$_ - 1] } 1 .. $#t;
        ok(@t >= 3, "heartbeat lanes: $paths[$i] stream $i gets its "
           . "heartbeats") or diag scalar(@t) . " in 8 s";
        ok(defined $gap && $gap > 0.5, "heartbeat lanes: $paths[$i] not "
           . "more often than its interval")
            or diag sprintf "%.2f s apart", $gap // -1;
    }

    ok(!$_->{closed}, 'heartbeat lanes: stream still open') for @s[1 .. $#s];
    $_->close for @s[1 .. $#s];
}

finish();
