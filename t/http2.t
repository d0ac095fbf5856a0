#!/usr/bin/perl

# Streams over HTTP/2 (curl --http2-prior-knowledge), behind proxy_pass
# (with proxy_buffering off, and with the default buffering that
# X-Accel-Buffering: no must switch off), and with gzip on: events must
# arrive live in every case, and closing the client must end the stream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $CURL = '/usr/bin/curl';
plan skip_all => 'curl not installed' unless -x $CURL;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /replay { webhook_stream chat; }
    }

    server {
        listen 127.0.0.1:%%PORT2%% http2;

        gzip on;
        gzip_types text/event-stream application/json;
        gzip_min_length 0;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }

    server {
        listen 127.0.0.1:%%PORT3%%;

        location / {
            proxy_pass http://127.0.0.1:%%PORT%%;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
    }

    server {
        listen 127.0.0.1:%%PORT4%%;

        location / {
            proxy_pass http://127.0.0.1:%%PORT%%;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    server {
        listen 127.0.0.1:%%PORT5%%;

        gzip on;
        gzip_types text/event-stream application/json;
        gzip_min_length 0;

        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : undef;
}

sub curl_stream
{
    my ($url, @opt) = @_;
    return WebhookSSE::SSE->new(cmd => [ $CURL, '-sS', '-i', '-N',
                                         '--max-time', '25', @opt, $url ],
                                path => $url, timeout => 5);
}

# check_live(name, stream, session): connected event, then a published
# message arrives without any further traffic
sub check_live
{
    my ($name, $s, $session) = @_;

    is($s->{status}, 200, "$name: 200");
    like($s->{headers}{'content-type'} // '', qr{^text/event-stream},
         "$name: text/event-stream");

    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{json} && $c->{json}{type}, 'connected',
       "$name: connected event arrives at once");

    my $id = $t->publish_ok('/pub', { message => "to $name",
                                      sessionId => $session });
    my @ev = $s->wait_for_event($id, 5);
    is(scalar @ev, 1, "$name: a published message arrives live");
    is($ev[-1] && $ev[-1]{json} && $ev[-1]{json}{message}, "to $name",
       "$name: payload intact") if @ev;

    my $id2 = $t->publish_ok('/pub', { message => "again to $name" });
    @ev = $s->wait_for_event($id2, 5);
    is(scalar @ev, 1, "$name: and the next one too");
}


# ----- HTTP/2 ----------------------------------------------------------------

{
    my $p2 = $t->port(2);
    my $s = curl_stream("http://127.0.0.1:$p2/stream?sessionId=h2",
                        '--http2-prior-knowledge');
    like($s->{head} // '', qr{^HTTP/2 200}, 'http2: response is HTTP/2');
    for my $h (qw(connection transfer-encoding keep-alive)) {
        ok(!exists $s->{headers}{$h}, "http2: no $h header");
    }
    check_live('http2', $s, 'h2');
    is(active(), 1, 'http2: counted in activeConnections');

    # publish over HTTP/2 as well
    my $out = '';
    if (open my $fh, '-|', $CURL, '-sS', '--http2-prior-knowledge',
        '--max-time', '5', '-H', 'Content-Type: application/json',
        '--data-binary', '{"message":"posted over h2","sessionId":"h2"}',
        "http://127.0.0.1:$p2/pub")
    {
        local $/;
        $out = <$fh> // '';
        close $fh;
    }
    my $j = json_decode($out);
    ok($j && $j->{success} && $j->{messageId}, 'http2: publish over HTTP/2')
        or diag $out;
    if ($j && $j->{messageId}) {
        ok(scalar $s->wait_for_event($j->{messageId}, 5),
           'http2: message posted over HTTP/2 arrives');
    }

    $s->close;
    ok(wait_until(sub { (active() // -1) == 0 }, 5),
       'http2: closing the client ends the stream');
}

{
    my $p2 = $t->port(2);
    my $s = curl_stream("http://127.0.0.1:$p2/stream?sessionId=h2z",
                        '--http2-prior-knowledge', '--compressed');
    check_live('http2 + gzip', $s, 'h2z');
    $s->close;
}


# ----- behind proxy_pass ---------------------------------------------------------

{
    my $s = $t->sse('/stream?sessionId=px', port => $t->port(3));
    check_live('proxy_buffering off', $s, 'px');

    my $last = $s->{last_id};
    my $id = $t->publish_ok('/pub', { message => 'missed', sessionId => 'px' });
    $s->close;
    ok(wait_until(sub { (active() // -1) == 0 }, 5),
       'proxy_buffering off: client close ends the upstream stream');

    my $r = $t->sse('/replay?sessionId=px', port => $t->port(3),
                    headers => { 'Last-Event-ID' => $last });
    my @ev = $r->wait_events(2, 5);
    is($ev[1] && $ev[1]{id}, $id,
       'proxy_buffering off: Last-Event-ID passes through the proxy');
    $r->close;
}

{
    my $s = $t->sse('/stream?sessionId=pb', port => $t->port(4));
    check_live('proxy_buffering on + X-Accel-Buffering: no', $s, 'pb');
    ok(!exists $s->{headers}{'x-accel-buffering'},
       'proxy: X-Accel-Buffering consumed by the proxy');
    $s->close;
}


# ----- gzip on, HTTP/1.1 ------------------------------------------------------------

{
    my $p5 = $t->port(5);
    my $s = curl_stream("http://127.0.0.1:$p5/stream?sessionId=gz",
                        '--compressed');
    check_live('gzip on (HTTP/1.1)', $s, 'gz');
    $s->close;

    # a raw client asking for gzip: whether the module lets gzip compress
    # the stream or not, each event must come out at once
    my $raw = $t->sse('/stream?sessionId=gz2', port => $p5,
                      headers => { 'Accept-Encoding' => 'gzip' });
    check_live('gzip on, raw client with Accept-Encoding: gzip', $raw, 'gz2');
    diag 'gzip on: stream is ' . ($raw->{headers}{'content-encoding'}
                                  ? 'gzip-encoded' : 'not compressed');
    $raw->close;
}

ok(wait_until(sub { (active() // -1) == 0 }, 5),
   'activeConnections: 0 at the end');

finish();
