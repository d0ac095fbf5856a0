#!/usr/bin/perl

# webhook_publish_response: the JSON a successful publish answers with,
# for senders that expect their own answer.  Values are JSON-escaped where
# they are inserted, a template that is not a JSON object is refused at
# load time, replays answer with the first message's values, the default
# answer is unchanged.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        webhook_publish_response
            '{"received":true,"id":"$webhook_message_id","at":$webhook_timestamp,"to":"${webhook_session}","ua":"$http_x_sender","cost":"$ 5"}';

        location = /tpl { webhook_publish chat; }
        location = /default {
            webhook_publish chat;
            webhook_publish_response default;
        }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location = /plain { webhook_publish chat; }
    }
EOF

my $s = $t->sse('/stream?sessionId=a"b\\c');
$s->wait_events(1, 5);

my $r = $t->publish('/tpl', { message => 'hi', sessionId => "a\"b\\c" },
                    headers => { 'X-Sender' => "bot \"7\"\x01" });
is($r->{status}, 200, 'template: 200');
is($r->{headers}{'content-type'}, 'application/json', 'template: JSON');
like($r->{body}, qr/\n\z/, 'template: ends with a newline like the default');
my $j = $r->{json};
ok($j, 'template: the answer is valid JSON with a " and \\ in the session '
       . 'and a control byte in a header') or diag $r->{body};
is($j->{to}, "a\"b\\c", 'template: the session, escaped and intact');
is($j->{ua}, "bot \"7\"\x01", 'template: any variable, escaped');
like($j->{id}, qr/^\d+-\d+$/, 'template: $webhook_message_id');
like($j->{at}, qr/^\d{13}$/, 'template: $webhook_timestamp as a number');
ok(!ref $j->{at} && $r->{body} =~ /"at":\d{13},/,
   'template: the timestamp is a JSON number');
is($j->{cost}, '$ 5', 'template: a "$" without a name stays');
is($j->{received}, JSON::PP::true(), 'template: literal parts as written');

my ($ev) = $s->wait_events(1, 5);
is($ev && $ev->{id}, $j->{id}, 'template: the id is the event\'s');
is($ev && $ev->{json}{timestamp}, $j->{at},
   'template: the timestamp is the event\'s');

# idempotent replay: same template, first message's values
my @k = map {
    $t->publish('/tpl', { message => 'once', sessionId => 'k' },
                headers => { 'Idempotency-Key' => 'tpl-key',
                             'X-Sender' => "try $_" })
} 1 .. 2;
is($k[1]{json}{id}, $k[0]{json}{id}, 'replay: the first message id');
is($k[1]{json}{at}, $k[0]{json}{at}, 'replay: the first timestamp');
is($k[1]{json}{to}, 'k', 'replay: the session');
is($k[1]{headers}{'idempotent-replayed'}, 'true', 'replay: marked');

# the default, unchanged
for my $loc (['/default', undef], ['/plain', 2]) {
    my $d = $t->publish($loc->[0], { message => 'x' },
                        port => $loc->[1] ? $t->port(2) : undef);
    like($d->{body},
         qr/^\{"success":true,"messageId":"\d+-\d+","timestamp":\d{13}\}\n\z/,
         "default answer on $loc->[0] as before");
}

# errors stay the module's
my $e = $t->publish('/tpl', { nomessage => 1 });
is($e->{status}, 400, 'template: errors are not templated');
is($e->{json}{success}, JSON::PP::false(), 'template: the error object');

$s->close;

# ----- load-time checks ------------------------------------------------------

for my $bad (['{"a":1,}', 'not a JSON object'],
             ['["a"]', 'not a JSON object'],
             ['{"a":"x}', 'not a JSON object'],
             ['{"a":$webhook_session}', 'must stand inside a JSON string'],
             ['{"a":"${webhook_session"}', 'without a name and "}"'],
             ['{a:1}', 'not a JSON object'],
             ['{"a":"$1"}', 'regex captures'])
{
    my $c = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                  http => <<"EOF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /p {
            webhook_publish chat;
            webhook_publish_response '$bad->[0]';
        }
    }
EOF
    my ($ok, $out) = $c->test_config;
    ok(!$ok, "nginx -t refuses the template $bad->[0]");
    like($out, qr/webhook_publish_response.*\Q$bad->[1]\E/,
         "... saying $bad->[1]") or diag $out;
}

finish();
