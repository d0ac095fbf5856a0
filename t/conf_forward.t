#!/usr/bin/perl

# conf/forward.conf, run as it is: a publish reaches the service on
# 127.0.0.1:9000 (here the Flask receiver of the tests) in the
# conversation format, signed with FORWARD_SECRET; run-time callbacks are
# https:// and public addresses only; the figures are in webhook_status.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

my $probe = WebhookSSE::Test->new;
my $rcv = WebhookSSE::Receiver->start(python => $probe->dir,
                                      secret => $SECRET);

my $t = WebhookSSE::Test->example('forward.conf',
                                  ports => { 9000 => $rcv->port },
                                  env => { WEBHOOK_SECRET => 's3cret',
                                           FORWARD_SECRET => $SECRET })
        ->start;

my $id = $t->publish_ok('/api/webhook', { message => 'Hello',
                                          sessionId => 'abc123' },
                        secret => 's3cret');

my @got = $rcv->wait_requests(sub { @_ >= 1 }, 15);
is(scalar @got, 1, 'the service got the message');
is($got[0]{path}, '/hooks/chat', 'at its URL');
ok($got[0]{verified}, 'signed with FORWARD_SECRET');
is($got[0]{id}, $id, 'webhook-id is the messageId');
is($got[0]{body}{conversation_id}, 'abc123', 'in the conversation format');
is($got[0]{body}{data}{content}, 'Hello', 'with the message');

my $r = $t->request('PUT', '/api/webhook/callbacks',
                    headers => [ 'X-Webhook-Secret' => 's3cret',
                                 'Content-Type' => 'application/json' ],
                    body => json_encode({ sessionId => 'abc123',
                        callback_url => 'http://127.0.0.1:' . $rcv->port }));
is($r->{status}, 400, 'a plain http:// callback to loopback is refused');

$r = $t->request('PUT', '/api/webhook/callbacks',
                 headers => [ 'X-Webhook-Secret' => 's3cret',
                              'Content-Type' => 'application/json' ],
                 body => json_encode({ sessionId => 'registered-only',
                     callback_url => 'https://hooks.example.com/x' }));
is($r->{status}, 200, 'an https:// callback is registered');

# the receiver has the request before the worker has its answer and
# counts the delivery: wait (bounded) for the count (it was 0 when read at
# once, in run 3 of 6 of the repeat loop)
my $ep;
wait_until(sub {
    $r = $t->request('GET', '/webhook-status');
    ($ep) = @{ $r->{json}{outbound} // [] };
    ($ep->{delivered} // 0) >= 1;
}, 10);
is($ep->{endpoint}, 'http://127.0.0.1:' . $rcv->port, 'status: the endpoint');
is($ep->{delivered}, 1, 'status: delivered');

finish();
