#!/usr/bin/perl

# conf/widget.conf, run as it is, with a stand-in bot (a forked Perl HTTP
# server on the loopback): the widget's prompt goes through nginx to the
# bot, which answers 202 and posts rich replies (card, article) to
# /api/webhook; they reach the widget's stream with their
# content_attributes intact.  CORS: preflights answered by nginx, the
# allowed origin echoed with credentials on streams, answers and errors,
# nothing for other origins.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use WebhookSSE::Test;

my $SECRET = 'widget-secret';
my $ORIGIN = 'https://www.example.com';

# ----- the bot ----------------------------------------------------------------

my $bot_listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => 0, Proto => 'tcp',
                                       Listen => 16, ReuseAddr => 1)
    or die "bot: listen: $!";

my $bot_pid;

END {
    local $?;                           # waitpid must not set our status
    if ($bot_pid) {
        kill 'TERM', $bot_pid;
        waitpid $bot_pid, 0;
    }
}

sub card_for
{
    my ($prompt) = @_;
    return {
        content_type => 'card',
        content_attributes => {
            items => [ {
                title       => "Results for \"$prompt\"",
                description => "Line one\nline two \x{2603} <b>not html</b>",
                media_url   => 'https://cdn.example.com/p/1.png?w=200&h=100',
                actions     => [
                    { type => 'link', text => 'View',
                      uri => 'https://shop.example.com/p/1' },
                    { type => 'postback', text => 'Buy',
                      payload => { sku => 'A-1', qty => 1 } },
                ],
            } ],
        },
    };
}

sub article_for
{
    return {
        content_type => 'article',
        content_attributes => {
            items => [
                { title => 'Shipping', description => 'How long it takes',
                  link => 'https://help.example.com/shipping' },
                { title => 'Returns', description => '30 days, "no questions"',
                  link => 'https://help.example.com/returns' },
            ],
        },
    };
}

# Answers POST /chat with 202 (and a CORS header of its own, which nginx
# must hide), then posts a card and an article for the prompt to nginx.
# An empty prompt gets 400; anything else 500 (nginx answers preflights
# itself).

sub run_bot
{
    my ($nginx_port) = @_;
    my $json = JSON::PP->new->utf8->canonical;
    my $http = HTTP::Tiny->new(timeout => 5);

    # never outlive the test; leave without the test's END blocks
    $SIG{ALRM} = $SIG{TERM} = $SIG{INT} = sub { POSIX::_exit(0) };
    alarm 60;

    while (my $c = $bot_listen->accept) {
        my $data = '';
        while ($data !~ /\r\n\r\n/) {
            sysread($c, $data, 65536, length $data) or last;
        }
        my ($head, $body) = split /\r\n\r\n/, $data, 2;
        $body //= '';
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        while (defined $len && length $body < $len) {
            sysread($c, $body, 65536, length $body) or last;
        }
        my ($method, $path) = $head =~ /^(\S+) (\S+)/;

        my $req = eval { $json->decode($body) } // {};
        my ($status, $answer) = (500, { error => "unexpected $method $path" });

        if ($method eq 'POST' && $path eq '/chat') {
            ($status, $answer) = length($req->{prompt} // '')
                ? (202, { accepted => JSON::PP::true() })
                : (400, { error => 'prompt is required' });
        }

        my $out = $json->encode($answer);
        print $c "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
                 . "Access-Control-Allow-Origin: *\r\n"
                 . "Content-Length: " . length($out) . "\r\n"
                 . "Connection: close\r\n\r\n$out";
        close $c;

        next unless $status == 202;

        for my $reply (card_for($req->{prompt}), article_for()) {
            $reply->{session_id} = $req->{session_id};
            $reply->{message} = "You asked: $req->{prompt}";
            $http->post("http://127.0.0.1:$nginx_port/api/webhook", {
                headers => { 'Content-Type' => 'application/json',
                             'X-Webhook-Secret' => $SECRET },
                content => $json->encode($reply),
            });
        }
    }

    POSIX::_exit(0);
}

my $t = WebhookSSE::Test->example('widget.conf',
                                  ports => { 5000 => $bot_listen->sockport },
                                  env => { WEBHOOK_SECRET => $SECRET })
        ->start;

$bot_pid = fork // die "fork: $!";
run_bot($t->port) if $bot_pid == 0;
close $bot_listen;

# ----- preflights -------------------------------------------------------------

for my $path ('/api/chat', '/api/webhook/stream?session_id=w1') {
    my $r = $t->request('OPTIONS', $path, headers => [
        Origin => $ORIGIN,
        'Access-Control-Request-Method' => $path =~ /chat/ ? 'POST' : 'GET',
        'Access-Control-Request-Headers' => $path =~ /chat/
                                            ? 'content-type'
                                            : 'authorization,last-event-id',
    ]);
    my $h = $r->{headers};
    is($r->{status}, 204, "preflight $path: 204 from nginx");
    is($h->{'access-control-allow-origin'}, $ORIGIN,
       "preflight $path: the origin echoed");
    is($h->{'access-control-allow-credentials'}, 'true',
       "preflight $path: credentials allowed");
    like($h->{'access-control-allow-methods'} // '',
         $path =~ /chat/ ? qr/\bPOST\b/ : qr/\bGET\b/,
         "preflight $path: the method allowed");
    my %allowed = map { lc($_) => 1 }
                  split /\s*,\s*/, $h->{'access-control-allow-headers'} // '';
    ok($path =~ /chat/ ? $allowed{'content-type'}
                       : $allowed{authorization} && $allowed{'last-event-id'},
       "preflight $path: the requested headers allowed");
    is($h->{'access-control-max-age'}, 600, "preflight $path: cached");
    like($h->{vary} // '', qr/\bOrigin\b/, "preflight $path: Vary: Origin");
}

my $r = $t->request('OPTIONS', '/api/chat', headers => [
    Origin => 'https://evil.example.net',
    'Access-Control-Request-Method' => 'POST' ]);
ok(!exists $r->{headers}{'access-control-allow-origin'}
   && !exists $r->{headers}{'access-control-allow-credentials'},
   'preflight from another origin: no CORS headers (the browser refuses)');

$r = $t->request('OPTIONS', '/api/chat', headers => [
    Origin => 'https://help.example.org',
    'Access-Control-Request-Method' => 'POST' ]);
is($r->{headers}{'access-control-allow-origin'}, 'https://help.example.org',
   'preflight from a subdomain the map allows: echoed');

# ----- the stream, cross-origin -----------------------------------------------

my $s = $t->sse('/api/webhook/stream?session_id=w1',
                headers => [ Origin => $ORIGIN,
                             Cookie => 'visitor=v1' ]);
is($s->status, 200, 'stream with credentials: 200');
is($s->headers->{'access-control-allow-origin'}, $ORIGIN,
   'stream with credentials: exact origin');
is($s->headers->{'access-control-allow-credentials'}, 'true',
   'stream with credentials: Access-Control-Allow-Credentials: true');
like($s->headers->{vary} // '', qr/\bOrigin\b/, 'stream: Vary: Origin');
ok(!exists $s->headers->{'access-control-allow-methods'},
   'stream: no preflight headers on a GET');
my ($c) = $s->wait_events(1, 5);
is($c && $c->{data}, '{"type":"connected","session_id":"w1"}',
   'stream: connected, session named session_id');

my $anon = $t->sse('/api/webhook/stream?session_id=w2',
                   headers => [ Origin => $ORIGIN ]);
is($anon->headers->{'access-control-allow-origin'}, $ORIGIN,
   'stream without credentials: the origin allowed');

my $other = $t->sse('/api/webhook/stream?session_id=w3',
                    headers => [ Origin => 'https://evil.example.net' ]);
ok(!exists $other->headers->{'access-control-allow-origin'},
   'stream from another origin: no CORS header');
$other->close;

# ----- errors carry the CORS headers ------------------------------------------

$r = $t->request('GET', '/api/webhook/stream?session_id=a%0Ab',
                 headers => [ Origin => $ORIGIN ]);
is($r->{status}, 400, 'stream with an invalid session: 400');
is($r->{headers}{'access-control-allow-origin'}, $ORIGIN,
   'stream 400: origin echoed, the widget can read the error');
is($r->{json} && $r->{json}{success}, 0, 'stream 400: JSON');

$r = $t->request('POST', '/api/webhook/stream?session_id=w1',
                 headers => [ Origin => $ORIGIN ], body => '');
is($r->{status}, 405, 'POST to the stream: 405');
is($r->{headers}{'access-control-allow-credentials'}, 'true',
   'stream 405: CORS headers too');

$r = $t->request('POST', '/api/chat', headers => [
    Origin => $ORIGIN, 'Content-Type' => 'application/json' ],
    body => '{"prompt":"","session_id":"w1"}');
is($r->{status}, 400, 'the bot\'s 400 passes through');
is($r->{headers}{'access-control-allow-origin'}, $ORIGIN,
   'the bot\'s 400: nginx\'s origin, the bot\'s "*" hidden');

$r = $t->publish('/api/webhook', { message => 'x', session_id => 'w1' },
                 secret => 'wrong', headers => { Origin => $ORIGIN });
is($r->{status}, 401, 'publish with a wrong secret: 401');
is($r->{headers}{'access-control-allow-origin'}, $ORIGIN,
   'publish 401: CORS headers too');

# ----- a prompt and the bot's rich replies ------------------------------------

my $prompt = "red shoes, size 42 \x{1f45f}";
$r = $t->request('POST', '/api/chat', headers => [
        Origin => $ORIGIN, Cookie => 'visitor=v1',
        'Content-Type' => 'application/json' ],
    body => json_encode({ prompt => $prompt, session_id => 'w1' }));
is($r->{status}, 202, 'prompt: the bot accepted it (202)');
is($r->{headers}{'access-control-allow-origin'}, $ORIGIN,
   'prompt answer: exactly one Access-Control-Allow-Origin, the origin');
is($r->{headers}{'access-control-allow-credentials'}, 'true',
   'prompt answer: credentials allowed');

my @ev = $s->wait_events(2, 10);
is(scalar @ev, 2, 'stream: two replies arrive');

my $card = $ev[0] && $ev[0]{json};
is($card && $card->{content_type}, 'card', 'first reply: a card');
is($card && $card->{message}, "You asked: $prompt",
   'the prompt reached the bot intact');
is($card && $card->{session_id}, 'w1', 'card: for this session');
is_deeply($card && $card->{content_attributes},
          card_for($prompt)->{content_attributes},
          'card: content_attributes intact (nesting, unicode, URLs, '
          . 'markup, numbers)');
ok($ev[0] && $ev[0]{id} && $ev[0]{id} eq $card->{messageId},
   'card: SSE id is the messageId');

my $article = $ev[1] && $ev[1]{json};
is($article && $article->{content_type}, 'article', 'second reply: an '
                                                    . 'article');
is_deeply($article && $article->{content_attributes},
          article_for()->{content_attributes},
          'article: content_attributes intact');

my $marker = $t->publish_ok('/api/webhook', { message => 'marker',
                                             session_id => 'w2' },
                            secret => $SECRET);
@ev = $anon->wait_for_event($marker, 5);
is(scalar @ev, 2, 'the other visitor\'s stream got none of the replies');

finish();
