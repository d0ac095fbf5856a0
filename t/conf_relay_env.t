#!/usr/bin/perl

# conf/relay-env.conf, run as it is: the chat-window relay with the
# webhook secret from the environment.  The right secret publishes, a
# wrong or missing one gets a 401 JSON answer and publishes nothing, the
# chat window's stream gets the message; the value is the master's (a
# reload keeps it, nginx -t without it fails).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $SECRET = 'env-s3cret-' . $$;

my $t = WebhookSSE::Test->example('relay-env.conf',
                                  env => { WEBHOOK_SECRET => $SECRET })
        ->start;

my $r = $t->request('GET', '/api/webhook');
is_deeply($r->{json}, { status => 'ok', activeConnections => 0 },
          'health check answers without a secret');

$r = $t->request('GET', '/');
is($r->{status}, 200, 'the demo chat window is served at /');

my $s = $t->sse('/api/webhook/stream?sessionId=abc123');
is($s->status, 200, 'stream opens');
is($s->headers->{'content-type'}, 'text/event-stream', 'stream content type');
my ($c) = $s->wait_events(1, 5);
is($c && $c->{data}, '{"type":"connected","sessionId":"abc123"}',
   'stream: connected event names the session');

# wrong and missing secrets: 401 JSON, nothing published

$r = $t->publish('/api/webhook', { message => 'forged', sessionId => 'abc123' },
                 secret => 'change-me');
is($r->{status}, 401, 'wrong secret: 401');
is($r->{headers}{'content-type'}, 'application/json', 'wrong secret: JSON');
is_deeply($r->{json}, { success => JSON::PP::false(),
                        error => 'invalid webhook secret' },
          'wrong secret: error object');

$r = $t->publish('/api/webhook', { message => 'forged', sessionId => 'abc123' },
                 secret => 'WEBHOOK_SECRET');
is($r->{status}, 401, 'the variable\'s name is not the secret');

$r = $t->publish('/api/webhook', { message => 'forged',
                                   sessionId => 'abc123' });
is($r->{status}, 401, 'missing secret: 401');
is($r->{json} && $r->{json}{error}, 'missing X-Webhook-Secret header',
   'missing secret: error object');

# the right secret: published and delivered, nothing forged before it

$r = $t->publish('/api/webhook', { message => 'Hello', sessionId => 'abc123',
                                   from => 'crm' },
                 secret => $SECRET);
is($r->{status}, 200, 'secret from the environment: 200');
ok($r->{json} && $r->{json}{success} && $r->{json}{messageId},
   'publish answer has a messageId');
my $id = $r->{json}{messageId};

my ($e) = $s->wait_events(1, 5);
is($e && $e->{id}, $id, 'stream: the first event after connected is the '
                        . 'accepted message (forged ones were not stored)');
is($e && $e->{json}{message}, 'Hello', 'stream: message text');
is($e && $e->{json}{from}, 'crm', 'stream: other fields kept');
is($e && $e->{json}{sessionId}, 'abc123', 'stream: session kept');

$id = $t->publish_ok('/api/webhook', { message => 'to everyone' },
                     secret => $SECRET);
($e) = $s->wait_events(1, 5);
is($e && $e->{id}, $id, 'a broadcast reaches the window too');

# nginx writes the line once the answer is out: wait for it (bounded)
my $logged = qr/"POST \/api\/webhook HTTP\/1\.1" 200 .* id=\Q$id\E /;
wait_until(sub { $t->access_log =~ $logged }, 5);
like($t->access_log, $logged, 'access log names the message id');

# the master read the variable: a reload keeps that value even when the
# environment of whoever sends the reload has another

$t->{env}{WEBHOOK_SECRET} = 'another-value';
$t->reload;

$r = $t->publish('/api/webhook', { message => 'after reload' },
                 secret => $SECRET);
is($r->{status}, 200, 'after reload: the master\'s value still publishes');
$r = $t->publish('/api/webhook', { message => 'after reload' },
                 secret => 'another-value');
is($r->{status}, 401, 'after reload: a new value needs a restart');

$s->close;
$t->stop;

# without the variable the configuration does not load

{
    my $u = WebhookSSE::Test->example(
        'relay-env.conf',
        env => { WEBHOOK_SECRET => '' },
        expect_log => [ qr/variable "WEBHOOK_SECRET" is not set/,
                        qr/1 webhook secret could not be read/ ]);
    my ($ok, $out) = $u->test_config;
    ok(!$ok, 'nginx -t fails when WEBHOOK_SECRET is empty');
    like($out, qr/WEBHOOK_SECRET/, 'nginx -t names the variable');
}

finish();
