#!/usr/bin/perl

# conf/cluster.conf, run as it is on two hosts and one Redis with a
# password: a publish on one reaches a chat window on the other with the
# id it was answered with; a retry on the other host with the same
# Idempotency-Key gets the first messageId; the status page shows both
# hosts; a window resumes on the other host.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;
use WebhookSSE::Redis;

my $PASSWORD = "redis-pw-$$";
my $SECRET = "s3cret-$$";

my $redis = WebhookSSE::Redis->new(password => $PASSWORD)->start;

my ($A, $B) = map {
    WebhookSSE::Test->example('cluster.conf',
                              ports => { 6379 => $redis->port },
                              env => { REDIS_PASSWORD => $PASSWORD,
                                       WEBHOOK_SECRET => $SECRET })->start
} 1 .. 2;

for my $t ($A, $B) {
    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       'host in sync with the cluster');
}

my $s = $B->sse('/api/webhook/stream?sessionId=abc');
is($s->status, 200, 'a chat window on B');
$s->wait_events(1, 5);

my $body = { message => 'hello from A', sessionId => 'abc' };
my $r = $A->publish('/api/webhook', $body, secret => $SECRET,
                    headers => { 'Idempotency-Key' => 'order-1' });
is($r->{status}, 200, 'publish on A');
my $id = $r->{json}{messageId};

my ($ev) = $s->wait_events(1, 10);
is($ev && $ev->{id}, $id, 'the window on B gets it, same id');
is($ev && $ev->{json}{message}, 'hello from A', 'with the message');

$r = $B->publish('/api/webhook', $body, secret => $SECRET,
                 headers => { 'Idempotency-Key' => 'order-1' });
is($r->{json}{messageId}, $id, 'a retry on B: the first messageId');

$r = $A->publish('/api/webhook', $body, secret => 'wrong');
is($r->{status}, 401, 'the webhook secret still applies');

$s->close;
my $id2 = $A->publish_ok('/api/webhook', { message => 'while away',
                                           sessionId => 'abc' },
                         secret => $SECRET);

ok(wait_until(sub {
       my $st = $A->request('GET', '/webhook-status')->{json} // {};
       my $c = $st->{cluster} // {};
       ($c->{hosts} // 0) == 2 && $c->{redis} eq 'up';
   }, 15), 'the status page shows two hosts and the link up');

ok(wait_until(sub {
       ($B->request('GET', '/webhook-status')->{json}{lastSeq} // 0)
           >= (id_parts($id2))[1];
   }, 10), 'B has the message published while the window was away');

my $back = $B->sse('/api/webhook/stream?sessionId=abc',
                   headers => { 'Last-Event-ID' => $id });
my @ev = $back->wait_events(2, 10);
is($ev[1] && $ev[1]{id}, $id2, 'the window resumes on B with what it missed');

WebhookSSE::SSE->close_all;
finish();
