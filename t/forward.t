#!/usr/bin/perl

# webhook_forward: every accepted message is POSTed to the configured URLs,
# as the SSE event (format=event) or the conversation shape, signed the
# Standard Webhooks way; receivers as users write them (Express with the
# npm standardwebhooks package, Flask with Python's hmac) check the
# signatures independently.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

my $t = WebhookSSE::Test->new(http => '');
my $node = WebhookSSE::Receiver->start(node => $t->dir, secret => $secret);
my $py = WebhookSSE::Receiver->start(python => $t->dir, secret => $secret);
my $np = $node->port;
my $pp = $py->port;

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /api/webhook {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$np/events secret=$secret;
            webhook_forward http://127.0.0.1:$pp/conversations
                            secret=$secret format=conversation;
        }

        location = /api/webhook/stream { webhook_stream chat; }

        location = /ordered {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$np/ordered;
            webhook_forward_concurrency 1;
        }

        location = /tenant {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$np/t/\$arg_tenant/in;
        }

        location = /status { webhook_status chat; }
    }
CONF
$t->start;

ok($node->vector, 'the npm standardwebhooks package verifies the published '
   . 'Standard Webhooks test vector');

# the event format, signed, to Express

my @ids;
for my $i (1 .. 3) {
    my $t0 = time;
    push @ids, $t->publish_ok('/api/webhook', {
        message => "hello $i", sessionId => 's1', content_type => 'TEXT',
        extra => { n => $i },
    });
    cmp_ok(time - $t0, '<', 2, "publish $i is answered at once");
}

my @ev = grep { $_->{path} eq '/events' } $node->wait_requests(
    sub { grep({ $_->{path} eq '/events' } @_) >= 3 }, 15);
@ev = sort { $a->{body}{extra}{n} <=> $b->{body}{extra}{n} } @ev;

is(scalar @ev, 3, 'Express got the 3 messages');
is_deeply([ map { $_->{id} } @ev ], \@ids,
          'webhook-id is the messageId');
is_deeply([ map { $_->{verified} ? 1 : 0 } @ev ], [1, 1, 1],
          'standardwebhooks verifies every signature');
like($ev[0]{signature}, qr{^v1,[A-Za-z0-9+/]{43}=$},
     'webhook-signature is v1,<base64 HMAC-SHA256>');
cmp_ok(abs($ev[0]{timestamp} - time), '<', 60,
       'webhook-timestamp is the time of the attempt, in seconds');
like($ev[0]{contentType}, qr{^application/json}, 'sent as application/json');
is($ev[0]{body}{type}, 'webhook_message', 'the event format: the SSE event');
is($ev[0]{body}{messageId}, $ids[0], 'with its messageId');
is($ev[0]{body}{message}, 'hello 1', 'its message');
is($ev[0]{body}{sessionId}, 's1', 'its session');
is_deeply($ev[0]{body}{extra}, { n => 1 }, 'and the other fields');
like($ev[0]{body}{timestamp}, qr/^\d{13}$/, 'timestamp in milliseconds');

# the SSE stream carries the same JSON object, byte for byte

my $sse = WebhookSSE::SSE->new(port => $t->port,
                               path => '/api/webhook/stream?sessionId=s1',
                               headers => { 'Last-Event-ID' => $ids[1] });
my ($last) = grep { ($_->{id} // '') eq $ids[2] } $sse->wait_events(2, 5);
is($last && $last->{data}, $ev[2]{raw},
   'the event format is the data line of the SSE event');
$sse->close;

# the conversation format, signed, to Flask

my @cv = $py->wait_requests(sub { @_ >= 3 }, 15);
@cv = sort { $a->{body}{data}{content} cmp $b->{body}{data}{content} } @cv;

is(scalar @cv, 3, 'Flask got the 3 messages');
is_deeply([ map { $_->{verified} ? 1 : 0 } @cv ], [1, 1, 1],
          'Python hmac verifies every signature');
is_deeply([ map { $_->{id} } @cv ], \@ids, 'webhook-id is the messageId');

my $c = $cv[0]{body};
is($c->{conversation_id}, 's1', 'conversation_id is the session');
is($c->{data}{id}, $ids[0], 'data.id is the messageId');
is($c->{data}{content}, 'hello 1', 'data.content is the message');
is($c->{data}{content_type}, 'TEXT', 'content_type as sent');
is($c->{data}{type}, 'BOT', 'type defaults to BOT');
is($c->{data}{channel}, 'API', 'channel defaults to API');
is($c->{data}{status}, 'RECEIVED', 'status defaults to RECEIVED');
is_deeply($c->{data}{metadata}, {}, 'metadata defaults to {}');
ok(!exists $c->{data}{filename}, 'no filename unless sent');
ok(exists $c->{data}{created_by} && !defined $c->{data}{created_by},
   'created_by defaults to null');
like($c->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'timestamp: ISO 8601 with milliseconds, UTC');
is($c->{data}{created_at}, $c->{timestamp}, 'created_at is the publish');
is($c->{data}{updated_at}, $c->{timestamp}, 'so is updated_at');

my @gm = gmtime(int($ev[0]{body}{timestamp} / 1000));
is($c->{timestamp}, sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ',
                            $gm[5] + 1900, $gm[4] + 1, @gm[3, 2, 1, 0],
                            $ev[0]{body}{timestamp} % 1000),
   'the ISO time is the publish timestamp');

# fields the publisher sent under the conversation's names are used

my $id = $t->publish_ok('/api/webhook', {
    message => 'a file', sessionId => 's1', content_type => 'FILE',
    message_type => 'USER', channel => 'WIDGET', status => 'SENT',
    metadata => { k => [1, 2] }, filename => 'a.pdf', created_by => 'u1',
});

my ($f) = grep { $_->{id} eq $id } $py->wait_requests(
    sub { grep { $_->{id} eq $id } @_ }, 15);

is_deeply([ @{ $f->{body}{data} }{qw(content_type type channel status
                                       filename created_by)} ],
          [qw(FILE USER WIDGET SENT a.pdf u1)],
          'the publisher\'s own fields are used (data.type from '
          . 'message_type)')
    or diag explain $f->{body};
is_deeply($f->{body}{data}{metadata}, { k => [1, 2] }, 'metadata as sent');

# a broadcast has no conversation

$id = $t->publish_ok('/api/webhook', { message => 'to all' });
($f) = grep { $_->{id} eq $id } $py->wait_requests(
    sub { grep { $_->{id} eq $id } @_ }, 15);
ok($f && exists $f->{body}{conversation_id}
   && !defined $f->{body}{conversation_id},
   'a broadcast: conversation_id null');

# URL variables are evaluated at publish time

$id = $t->publish_ok('/tenant?tenant=acme', { message => 'x' });
my ($tn) = grep { $_->{id} eq $id } $node->wait_requests(
    sub { grep { $_->{id} eq $id } @_ }, 15);
is($tn->{path}, '/t/acme/in', 'URL with variables evaluated at publish time');
ok(!defined $tn->{signature}, 'no secret: no webhook-signature');

# per endpoint, the deliveries of one session start in publish order

my @ord = map { $t->publish_ok('/ordered', { message => "m$_",
                                            sessionId => 'o' }) } 1 .. 20;
my @got = grep { $_->{path} eq '/ordered' }
          $node->wait_requests(sub {
              grep({ $_->{path} eq '/ordered' } @_) >= 20 }, 20);
is_deeply([ map { $_->{id} } @got ], \@ord,
          'one session\'s deliveries arrive in publish order');

# the figures

# (a receiver has a request before the worker has its answer and counts
# it: wait, bounded, for the counts, as in t/conf_forward.t)
my (%ep, $st);
wait_until(sub {
    $st = $t->request('GET', '/status')->{json};
    %ep = map { $_->{endpoint} => $_ } @{ $st->{outbound} // [] };
    ($ep{"http://127.0.0.1:$np"}{delivered} // 0) >= 3 + 1 + 1 + 1 + 20
        && ($ep{"http://127.0.0.1:$pp"}{delivered} // 0) >= 5;
}, 10);
is($ep{"http://127.0.0.1:$np"}{delivered}, 3 + 1 + 1 + 1 + 20,
   'status: delivered per endpoint');
is($ep{"http://127.0.0.1:$pp"}{delivered}, 5, 'for each endpoint');
is($ep{"http://127.0.0.1:$pp"}{lastStatus}, 200, 'with the last status');
cmp_ok($ep{"http://127.0.0.1:$pp"}{latencyP99Us}, '>', 0,
       'and latency percentiles');

my $prom = $t->request('GET', '/status?format=prometheus')->{body};
like($prom, qr/^webhook_forward_delivered_total\{zone="chat",endpoint=
               "http:\/\/127\.0\.0\.1:$pp"\}\ 5$/mx,
     'Prometheus: delivered per endpoint');

# configuration errors

for my $case (
    [ 'webhook_forward http://127.0.0.1:1/;',
      qr/needs "webhook_publish"/, 'webhook_forward without a publish' ],
    [ 'webhook_publish chat; webhook_forward ftp://x/;',
      qr/invalid webhook_forward URL/, 'not http(s)' ],
    [ 'webhook_publish chat; webhook_forward http://x/ secret=whsec_;',
      qr/whsec_/, 'an empty whsec_ secret' ],
    [ 'webhook_publish chat; webhook_forward http://x/ format=xml;',
      qr/invalid parameter/, 'an unknown format' ],
    [ 'webhook_publish chat; webhook_forward_rate 10r/h;',
      qr/100r\/m/, 'a rate per hour' ],
    [ 'webhook_publish chat; webhook_forward_allow 10.0.0.0/33;',
      qr/invalid address/, 'a bad CIDR' ],
    [ 'webhook_publish chat; webhook_forward_concurrency 0;',
      qr/1 to 10000/, 'a concurrency of 0' ],
    [ 'webhook_publish chat; webhook_forward_retry 1s x;',
      qr/invalid wait/, 'a bad retry wait' ],
    [ 'webhook_publish chat; webhook_forward_yield soon;',
      qr/invalid value/, 'a bad yield time' ],
    [ 'webhook_publish chat; webhook_forward_yield 1s; '
      . 'webhook_forward_yield off;',
      qr/is duplicate/, 'a second webhook_forward_yield' ],
    [ 'webhook_publish chat; '
      . 'webhook_forward http://x/ secret=env=NO_SUCH_VAR_X;',
      qr/NO_SUCH_VAR_X/, 'a secret from a missing variable' ],
)
{
    my ($conf, $re, $name) = @$case;
    my $bad = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                    http => <<"CONF");
    webhook_zone zone=chat:1m;
    server { listen 127.0.0.1:%%PORT%%; location = /p { $conf } }
CONF
    my ($ok, $out) = $bad->test_config;
    ok(!$ok, "nginx -t refuses $name");
    like($out, $re, "and says why ($name)");
}

finish();
