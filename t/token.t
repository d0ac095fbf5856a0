#!/usr/bin/perl

# webhook_stream_token: a stream opens only with a token the app minted,
# "<expires>.<hex HMAC-SHA256 of "<expires>.<session>">", from ?token= (or
# where token= says) or an Authorization: Bearer header.  Wrong session,
# wrong secret, expired or malformed: 403 with a JSON error.  Tokens are
# computed here with Digest::SHA.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256_hex);
use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(
    env  => { WEBHOOK_SSE_TEST_TOKEN => 'token-secret-2' },
    http => <<'EOF');
    webhook_zone zone=chat:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub { webhook_publish chat; }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_stream_token "token-secret" env=WEBHOOK_SSE_TEST_TOKEN;
        }

        location = /cookie {
            webhook_stream chat;
            webhook_replay 0;
            webhook_stream_token "token-secret" token=$cookie_chat_token;
        }

        location /rooms/ {
            webhook_stream_token "token-secret";

            location ~ ^/rooms/([^/]+)/stream$ {
                webhook_stream chat;
                webhook_session $1;
                webhook_replay 0;
            }

            location = /rooms/open {
                webhook_stream chat;
                webhook_replay 0;
                webhook_stream_token off;
            }
        }
    }
EOF

$t->start;

sub token
{
    my ($session, %o) = @_;
    my $exp = $o{expires} // time + 3600;
    $exp = int $exp;
    return "$exp." . hmac_sha256_hex("$exp.$session",
                                     $o{secret} // 'token-secret');
}

sub uri_escape
{
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# opens(PATH, name, headers): the stream opens (200, connected) and gets a
# message published to its session afterwards
sub opens
{
    my ($path, $session, $name, %h) = @_;
    my $s = $t->sse($path, headers => \%h);
    my @ev = $s->wait_events(1, 5);
    is($s->status, 200, "$name: 200");
    like($ev[0] && $ev[0]{data} // '', qr/"type":"connected"/,
         "$name: connected");
    my $id = $t->publish_ok('/pub', { message => "for $name",
                                      length $session
                                          ? (sessionId => $session) : () });
    ok(scalar $s->wait_for_event($id, 5), "$name: receives its session's "
                                          . 'messages');
    $s->close;
}

sub refused
{
    my ($path, $re, $name, %h) = @_;
    my $r = $t->request('GET', $path, headers => \%h);
    is($r->{status}, 403, "$name: 403");
    like($r->{json} && $r->{json}{error} // '', $re, "$name: JSON error says "
                                                     . 'why')
        or diag $r->{body};
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$name: not an event stream");
}

my $tok = token('alice');

opens("/stream?sessionId=alice&token=$tok", 'alice', 'token in the query');
opens('/stream?sessionId=alice', 'alice', 'token as a bearer header',
      Authorization => "Bearer $tok");
opens("/stream?sessionId=alice&token=" . token('alice',
                                               secret => 'token-secret-2'),
      'alice', 'token from the second secret (rotation, from env=)');
opens('/cookie?sessionId=alice', 'alice', 'token from a cookie (token=)',
      Cookie => "other=1; chat_token=$tok");
opens('/rooms/room%201/stream?token=' . token('room 1'), 'room 1',
      'session from the URL path, token for the decoded name');
opens('/stream?sessionId=' . uri_escape('bob & co') . '&token='
      . token('bob & co'), 'bob & co',
      'percent-encoded sessionId: the token signs the decoded one');
opens('/stream?token=' . token(''), '', 'broadcast-only stream: token for '
                                         . 'the empty session');
opens('/rooms/open', '', 'webhook_stream_token off in a nested location');

refused('/stream?sessionId=alice', qr/needs a token/, 'no token');
refused('/stream?sessionId=alice&token=', qr/needs a token/, 'empty token');
refused("/stream?sessionId=bob&token=$tok", qr/does not match this session/,
        'token of another session');
refused("/stream?sessionId=alice&token=" . token('alice', secret => 'guess'),
        qr/does not match/, 'token made with another secret');
refused("/stream?token=$tok", qr/does not match/,
        'a session token does not open the broadcast-only stream');
refused('/stream?sessionId=alice&token=' . token('alice',
                                                 expires => time - 5),
        qr/has expired/, 'expired token');
refused('/stream?sessionId=alice&token=' . token('alice') . 'ff',
        qr/malformed/, 'token with extra digits');
refused('/stream?sessionId=alice&token=notatoken', qr/malformed/,
        'token without a dot');
refused('/stream?sessionId=alice&token=soon.' . 'a' x 64, qr/malformed/,
        'expiry not a number');

{
    # the expiry is part of what is signed: it cannot be extended
    my ($exp, $mac) = split /\./, token('alice', expires => time - 5);
    my $later = $exp + 86400;
    refused("/stream?sessionId=alice&token=$later.$mac", qr/does not match/,
            'expiry changed without the secret');
}

refused('/cookie?sessionId=alice', qr/needs a token/,
        'token= source: the query is not looked at',
        Cookie => 'chat_token=');

refused('/stream?sessionId=alice', qr/needs a token/,
        'Authorization that is not Bearer', Authorization => "Basic $tok");

{
    # a refused stream leaves nothing behind: no stream counted
    my $r = $t->request('GET', '/pub');
    is($r->{json}{activeConnections}, 0, 'refused streams are not counted');
}

{
    my $bad = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                    http => <<'EOF');
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /s { webhook_stream chat; webhook_stream_token token=$arg_t; }
    }
EOF
    my ($ok, $out) = $bad->test_config;
    ok(!$ok, 'config without a secret refused');
    like($out, qr/needs at least one secret/, 'config error says why');
}

finish();
