#!/usr/bin/perl

# conf/reverse-proxy.conf, run as it is: nginx proxies the chat application
# (the file's stand-in server) and holds the webhook and the streams
# itself; auth_request asks the application before a stream opens.  Then,
# with a short heartbeat, that streams behind auth_request detach, deliver,
# beat and survive the subrequest's timeouts, count and uncount, and end on
# reload like any other.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $SECRET = 'rp-secret';

my $t = WebhookSSE::Test->example('reverse-proxy.conf',
                                  ports => { 3000 => '%%PORT2%%' },
                                  env => { WEBHOOK_SECRET => $SECRET })
        ->start;

my $STREAM = '/api/webhook/stream?sessionId=abc123';
my %COOKIE = (Cookie => 'chat_token=demo-token');

# ----- the application behind nginx ------------------------------------------

my $r = $t->request('GET', '/',
                     headers => { 'X-Forwarded-For' => '192.0.2.7' });
is($r->{status}, 200, 'app page: proxied');
is($r->{headers}{'x-served-by'}, 'chat-app', 'app page: from the app');
like($r->{body}, qr/stand-in\) for 192\.0\.2\.7, 127\.0\.0\.1\./,
     'app page: X-Forwarded-For passed on');

$r = $t->request('GET', '/some/app/route');
is($r->{headers}{'x-served-by'}, 'chat-app', 'other paths go to the app');

# ----- streams need the application's yes -------------------------------------

$r = $t->request('GET', $STREAM);
is($r->{status}, 401, 'stream without credentials: 401');
is($r->{headers}{'content-type'}, 'application/json',
   'stream without credentials: JSON');
is_deeply($r->{json}, { success => JSON::PP::false(),
                        error => 'unauthorized' },
          'stream without credentials: error object');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="chat"',
   'stream without credentials: the app\'s WWW-Authenticate');

$r = $t->request('GET', $STREAM, headers => { Cookie => 'chat_token=wrong' });
is($r->{status}, 401, 'stream with a wrong token: 401');

$r = $t->request('GET', '/api/webhook/stream?sessionId=someone-else',
                 headers => \%COOKIE);
is($r->{status}, 401, 'stream of another user\'s session: 401 (the app '
                      . 'sees the session in X-Webhook-Session)');

# $arg_sessionId ignores case and takes the first match: the application
# is told the session nginx streams, not left to parse the URI its own way
for my $q ('SESSIONID=victim&sessionId=abc123',
           'sessionid=victim&sessionId=abc123',
           'sessionId=victim&sessionId=abc123')
{
    $r = $t->request('GET', "/api/webhook/stream?$q", headers => \%COOKIE);
    is($r->{status}, 401, "stream ?$q: 401, the victim's session is not "
                          . 'streamed');
}

$r = $t->request('GET', '/api/webhook/stream?sessionId=abc%2',
                 headers => \%COOKIE);
is($r->{status}, 401, 'stream ?sessionId=abc%2 (a malformed escape): no '
                      . 'X-Webhook-Session, refused');

$r = $t->request('GET', '/_auth/stream', headers => \%COOKIE);
is($r->{status}, 404, 'the auth location is internal');

my $s = $t->sse($STREAM, headers => \%COOKIE);
is($s->status, 200, 'stream with the cookie: 200');
is($s->headers->{'content-type'}, 'text/event-stream',
   'stream with the cookie: event stream');
my ($c) = $s->wait_events(1, 5);
is($c && $c->{json}{type}, 'connected', 'stream with the cookie: connected');

my $b = $t->sse($STREAM, headers => { Authorization => 'Bearer demo-token' });
is($b->status, 200, 'stream with a bearer token: 200');
$b->wait_events(1, 5);

# ----- publish ------------------------------------------------------------

$r = $t->publish('/api/webhook', { message => 'Hi', sessionId => 'abc123' });
is($r->{status}, 401, 'publish without the secret: 401');

$r = $t->publish('/api/webhook', { message => 'Hi', sessionId => 'abc123' },
                 secret => $SECRET);
is($r->{status}, 200, 'publish with the secret: 200');
my $id = $r->{json}{messageId};

for ([ cookie => $s ], [ bearer => $b ]) {
    my ($name, $stream) = @$_;
    my ($e) = $stream->wait_events(1, 5);
    is($e && $e->{id}, $id, "$name stream: receives the message");
    is($e && $e->{json}{message}, 'Hi', "$name stream: message intact");
}

# a service's publish, allowed by the application through auth_request
{
    my $svc = '/api/service/webhook';
    my $msg = { message => 'from a service', sessionId => 'abc123' };

    $r = $t->publish($svc, $msg);
    is($r->{status}, 401, 'auth_request publish without a key: 401');
    is($r->{json} && $r->{json}{success}, JSON::PP::false(),
       'auth_request publish without a key: JSON error');

    $r = $t->publish($svc, $msg,
                     headers => { Authorization => 'Bearer wrong-key' });
    is($r->{status}, 401, 'auth_request publish with a wrong key: 401');

    # a body bigger than the client body buffer: read after the subrequest
    my $big = { %$msg, padding => 'p' x 50000 };
    for my $body ($msg, $big) {
        $r = $t->publish($svc, $body,
                         headers => { Authorization => 'Bearer service-key' });
        is($r->{status}, 200, 'auth_request publish with the key: 200 ('
                              . length(json_encode($body)) . ' bytes)');
        my ($e) = $s->wait_events(1, 5);
        is($e && $e->{id}, $r->{json}{messageId},
           'auth_request publish: delivered');
        is($e && length($e->{json}{padding} // ''),
           length($body->{padding} // ''), 'auth_request publish: the body '
                                           . 'arrived whole');
    }
    $b->wait_events(2, 5);
}

is($t->request('GET', '/api/webhook')->{json}{activeConnections}, 2,
   'health check counts the two streams');

# ----- a browser's way: page, then stream on the same connection -------------

{
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $t->port, Proto => 'tcp',
                                     Timeout => 5)
        or die "connect: $!";
    my $data = '';

    # reads (bounded) until $re matches what arrived
    my $read_until = sub {
        my ($re) = @_;
        my $sel = IO::Select->new($sock);
        my $deadline = time + 5;
        while ($data !~ $re) {
            my $left = $deadline - time;
            return 0 if $left <= 0 || !$sel->can_read($left);
            sysread($sock, $data, 65536, length $data) or return 0;
        }
        return 1;
    };

    print $sock "GET / HTTP/1.1\r\nHost: localhost\r\n"
                . "Cookie: chat_token=demo-token\r\n\r\n";
    ok($read_until->(qr/\r\n\r\n.*stand-in.*<\/p>\n/s),
       'keep-alive: the page first');

    $data = '';
    print $sock "GET $STREAM HTTP/1.1\r\nHost: localhost\r\n"
                . "Cookie: chat_token=demo-token\r\n"
                . "Accept: text/event-stream\r\n\r\n";
    ok($read_until->(qr/"type":"connected"/),
       'keep-alive: then the stream on the same connection');

    $id = $t->publish_ok('/api/webhook', { message => 'keep-alive',
                                           sessionId => 'abc123' },
                         secret => $SECRET);
    ok($read_until->(qr/id: \Q$id\E\r?\ndata: \{[^\n]*"keep-alive"/),
       'keep-alive: the stream receives');
    close $sock;
}

$s->close;
$b->close;
$t->stop;

# ----- behind auth_request: heartbeats, timeouts, reload ---------------------

$t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m;

    upstream app {
        server 127.0.0.1:%%PORT2%%;
        keepalive 4;
    }

    log_format sse '$uri $status';

    server {
        listen 127.0.0.1:%%PORT%%;

        access_log %%PREFIX%%/logs/sse.log sse;

        location = /pub { webhook_publish chat; }

        location = /stream {
            auth_request /auth;
            webhook_stream chat;
            webhook_heartbeat 1s;
        }

        location = /auth {
            internal;
            proxy_pass http://app/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 1s;
            proxy_send_timeout 1s;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        keepalive_timeout 1s;
        access_log off;

        location = /auth {
            if ($http_authorization != "Bearer t") { return 401; }
            return 204;
        }
    }
EOF

my %AUTH = (Authorization => 'Bearer t');

sub active { $t->request('GET', '/pub')->{json}{activeConnections} }

sub sse_log
{
    open my $fh, '<', $t->dir . '/logs/sse.log' or return '';
    local $/;
    return <$fh> // '';
}

my $t0 = time;
my @streams = map { $t->sse("/stream?sessionId=h$_", headers => \%AUTH) }
              1 .. 20;
is(scalar(grep { $_->status == 200 } @streams), 20,
   'auth_request: 20 streams open');
ok(WebhookSSE::SSE::wait_all(\@streams, sub { $_[0]{events}[0] }, 5),
   'auth_request: all connected');
$_->wait_events(1, 0) for @streams;

ok(wait_until(sub { sse_log() =~ m{^/stream 200$}m }, 10),
   'auth_request: the stream detached (logged while open)');

ok(WebhookSSE::SSE::wait_all(\@streams,
                             sub { @{ $_[0]{comments} } >= 3 }, 8),
   'auth_request: three heartbeats on every stream, past the auth '
   . 'subrequest\'s proxy timeouts and the app\'s keepalive_timeout');
cmp_ok(time - $t0, '>=', 2, 'auth_request: heartbeats are paced');

is(active(), 20, 'auth_request: all streams counted');

my @ids = map { $t->publish_ok('/pub', { message => "live $_",
                                         sessionId => "h$_" }) } 1 .. 20;
my $all = 1;
for my $i (0 .. 19) {
    my @ev = $streams[$i]->wait_for_event($ids[$i], 5);
    $all = 0 unless @ev == 1 && $ev[0]{json}{message} eq 'live ' . ($i + 1);
}
ok($all, 'auth_request: each stream gets its own message, and only it');

my $bid = $t->publish_ok('/pub', { message => 'to all' });
ok(WebhookSSE::SSE::wait_all(\@streams,
       sub { grep { ($_->{id} // '') eq $bid } @{ $_[0]{events} } }, 5),
   'auth_request: a broadcast reaches all');

$_->abort for @streams[10 .. 19];
ok(wait_until(sub { active() == 10 }, 5),
   'auth_request: streams that vanish are uncounted');

$t->reload;
ok(WebhookSSE::SSE::wait_all([ @streams[0 .. 9] ],
                             sub { $_[0]{closed} }, 5),
   'auth_request: reload ends the streams of the old workers');
ok(!grep({ ($_->{retry}[-1] // '') ne '1000' } @streams[0 .. 9]),
   'auth_request: each ended with retry: 1000');

my $again = $t->sse('/stream?sessionId=h1', headers => {
                        %AUTH, 'Last-Event-ID' => $ids[0] });
my ($conn, $e) = $again->wait_events(2, 5);
is($e && $e->{id}, $bid, 'auth_request: the client resumes after reload');

finish();
