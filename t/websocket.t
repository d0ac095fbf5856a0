#!/usr/bin/perl

# A stream location over WebSocket, with the npm ws client: the connected
# event, the replay, live events in order without gaps or duplicates,
# resume by ?lastEventId=, pings answered, a client without pongs closed,
# close frames answered, client data frames ignored, exact counts, the
# handshake's checks and webhook_stream_transports.

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
    webhook_zone zone=chat:16m history=500;

    # docs/security.md: WebSocket and cookies
    map $http_origin $webhook_bad_origin {
        default                    1;
        ""                         0;    # not sent by a browser
        "https://chat.example.com" 0;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /origin {
            if ($webhook_bad_origin) {
                return 403;
            }

            webhook_stream chat;
        }

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 3; }
        location = /ping   { webhook_stream chat; webhook_heartbeat 1s; }
        location = /no-ws  {
            webhook_stream chat;
            webhook_stream_transports sse longpoll;
        }
        location = /ws-only {
            webhook_stream chat;
            webhook_stream_transports websocket;
        }
    }
EOF

my $port = $t->port;
my $base = "ws://127.0.0.1:$port";

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : -1;
}

# ----- connected, replay, live ------------------------------------------

my @before = map { $t->publish_ok('/pub', { message => "b$_",
                                             sessionId => 'w1' }) } 1 .. 5;

my $ws = WebhookSSE::WS->new(url => "$base/stream?sessionId=w1");
ok($ws->wait_line(qr/^MSG /, 10, 4), 'connected and replay arrive');

my @m = $ws->messages;
is_deeply($m[0], { type => 'connected', sessionId => 'w1' },
          'the connected event comes first, as SSE has it');
is_deeply([ map { $_->{messageId} } @m[1 .. 3] ], [ @before[2 .. 4] ],
          'then the newest webhook_replay messages, in order');
is($m[1]{message}, 'b3', 'the event is the JSON of the SSE data line');
is(active(), 1, 'activeConnections counts the WebSocket');

my @live;
for my $i (1 .. 60) {
    my $body = $i % 5 == 0 ? { message => "bc$i" }
             : $i % 7 == 0 ? { message => "o$i", sessionId => 'other' }
             : { message => "l$i", sessionId => 'w1' };
    my $id = $t->publish_ok('/pub', $body);
    push @live, $id unless ($body->{sessionId} // 'w1') ne 'w1';
}

ok($ws->wait_ids(\@live, 10), 'live events arrive');
is_deeply([ $ws->message_ids ], [ @before[2 .. 4], @live ],
          'session and broadcast events, in order, none twice, none '
          . 'of another session');

# ----- client data frames are ignored; close frames answered ------------

$ws->command('send {"message":"not for publishing"}');
$ws->command('send hello');
my $after = $t->publish_ok('/pub', { message => 'after', sessionId => 'w1' });
ok($ws->wait_ids([$after], 10), 'the stream goes on after client frames');
is(scalar(() = grep { ($_->{message} // '') eq 'not for publishing' }
                   $ws->messages), 0, 'client frames are not published');

$ws->command('send ' . ('x' x 70000));
ok($ws->wait_line(qr/^CLOSE 1009\b/, 10),
   'a client message over 64 KB closes the WebSocket with 1009');
ok(wait_until(sub { active() == 0 }, 10), 'and it is no longer counted');
$ws->stop;

$ws = WebhookSSE::WS->new(url => "$base/stream?sessionId=w1");
ok($ws->wait_line(qr/^MSG .*"connected"/, 10), 'connected again');
$ws->command('close');
ok($ws->wait_line(qr/^CLOSE 1000\b/, 10),
   'a client close frame is answered (the client sees a clean 1000)');
ok(wait_until(sub { active() == 0 }, 10), 'activeConnections back to 0');
$ws->stop;

# ----- resume ------------------------------------------------------------

my $last = $after;
my @missed = map { $t->publish_ok('/pub', { message => "m$_",
                                             sessionId => 'w1' }) } 1 .. 10;

$ws = WebhookSSE::WS->new(url => "$base/stream?sessionId=w1&lastEventId="
                                 . $last);
ok($ws->wait_ids(\@missed, 10), 'resume delivers what was missed');
is_deeply([ $ws->message_ids ], \@missed,
          'resume: exactly the messages after lastEventId');
is(($ws->messages)[0]{type}, 'connected', 'connected first on resume too');
$ws->stop;

# ----- pings --------------------------------------------------------------

$ws = WebhookSSE::WS->new(url => "$base/ping?sessionId=p1");
ok($ws->wait_line(qr/^PING$/, 10, 3), 'heartbeats are WebSocket pings');
ok(!$ws->count(qr/^CLOSE/), 'a client answering pongs stays connected');
my $pid = $t->publish_ok('/pub', { message => 'p', sessionId => 'p1' });
ok($ws->wait_ids([$pid], 10), 'and receives events');
$ws->stop;

my $silent = WebhookSSE::WS->new(url => "$base/ping?sessionId=p2",
                                 no_pong => 1);
ok($silent->wait_line(qr/^CLOSE /, 15),
   'a client that does not answer pings is closed');
ok($silent->count(qr/^PING$/) >= 1, 'after it was pinged');
$t->expect_log(qr/no pong from the WebSocket client/);
ok(wait_until(sub { active() == 0 }, 10), 'and no longer counted');
$silent->stop;

# ----- transports and handshake checks ------------------------------------

$ws = WebhookSSE::WS->new(url => "$base/no-ws?sessionId=x");
ok($ws->wait_line(qr/^HTTP /, 10), 'a location without websocket refuses');
my ($http) = grep { /^HTTP / } @{ $ws->lines };
like($http, qr/^HTTP 400 .*"success":false.*WebSocket is not enabled/,
     '400 with a JSON error naming the cause');
$ws->stop;

my $r = $t->request('GET', '/ws-only?sessionId=x');
is($r->{status}, 400, 'SSE refused where only websocket is allowed');
like($r->{json}{error} // '', qr/SSE is not enabled/, 'with a clear error');

$r = $t->request('GET', '/no-ws?sessionId=x&transport=websocket',
                 headers => { Upgrade => 'websocket',
                              Connection => 'Upgrade',
                              'Sec-WebSocket-Version' => 13,
                              'Sec-WebSocket-Key' =>
                                  'dGhlIHNhbXBsZSBub25jZQ==' });
is($r->{status}, 400, '?transport=websocket refused there as well');

$r = $t->request('GET', '/stream?sessionId=x',
                 headers => { Upgrade => 'websocket',
                              Connection => 'Upgrade',
                              'Sec-WebSocket-Version' => 8,
                              'Sec-WebSocket-Key' =>
                                  'dGhlIHNhbXBsZSBub25jZQ==' });
is($r->{status}, 426, 'another WebSocket version: 426');
is($r->{headers}{'sec-websocket-version'}, '13', 'naming version 13');

$r = $t->request('GET', '/stream?sessionId=x',
                 headers => { Upgrade => 'websocket',
                              Connection => 'Upgrade',
                              'Sec-WebSocket-Version' => 13,
                              'Sec-WebSocket-Key' => 'short' });
is($r->{status}, 400, 'a bad Sec-WebSocket-Key: 400');
like($r->{json}{error} // '', qr/Sec-WebSocket-Key/, 'named in the error');

$r = $t->request('GET', '/stream?sessionId=x', raw =>
                 "GET /stream?sessionId=x HTTP/1.0\r\nHost: localhost\r\n"
                 . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 . "Sec-WebSocket-Version: 13\r\n"
                 . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
is($r->{status}, 400, 'a WebSocket over HTTP/1.0: 400');

$r = $t->request('GET', '/stream?sessionId=x&transport=carrier-pigeon');
is($r->{status}, 400, 'an unknown ?transport= is a 400');

# ----- the Origin check of docs/security.md --------------------------------

$ws = WebhookSSE::WS->new(url => "$base/origin?sessionId=o",
                          origin => 'https://evil.example');
ok($ws->wait_line(qr/^HTTP /, 10), 'another site\'s page is refused');
($http) = grep { /^HTTP / } @{ $ws->lines };
like($http, qr/^HTTP 403 /, 'with 403');
$ws->stop;

$ws = WebhookSSE::WS->new(url => "$base/origin?sessionId=o",
                          origin => 'https://chat.example.com');
ok($ws->wait_line(qr/^MSG .*"connected"/, 10), 'the own site is let in');
$ws->stop;

ok(wait_until(sub { active() == 0 }, 10), 'no stream left counted');

finish();
