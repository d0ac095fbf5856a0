#!/usr/bin/perl

# webhook_forward with webhook_redis: the host that takes a publish
# delivers it once Redis has acknowledged it, signed, with the cluster's
# messageId as webhook-id; the other hosts, which receive the message
# through Redis, do not deliver it again; an idempotent retry on another
# host is not delivered twice.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;
use WebhookSSE::Redis;
use WebhookSSE::Receiver;

my $SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

my $redis = WebhookSSE::Redis->new->start;
my $url = $redis->url;

my $probe = WebhookSSE::Test->new;
my $rcv = WebhookSSE::Receiver->start(python => $probe->dir,
                                      secret => $SECRET);
my $to = 'http://127.0.0.1:' . $rcv->port . '/in';

sub host
{
    my $t = WebhookSSE::Test->new(http => <<"EOF")->start;
    webhook_zone zone=chat:1m history=50;
    webhook_redis chat $url prefix=fwd:;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub {
            webhook_publish chat;
            webhook_forward $to secret=$SECRET;
        }
    }
EOF

    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       "host $t->{dir}: in sync with the cluster");
    return $t;
}

my ($a, $b) = (host(), host());

my $id = $a->publish_ok('/pub', { message => 'one', sessionId => 's' });
my $again = $b->publish_ok('/pub', { message => 'one', sessionId => 's' },
                           headers => { 'Idempotency-Key' => 'k1' });
my $first = $a->publish_ok('/pub', { message => 'two', sessionId => 's' },
                           headers => { 'Idempotency-Key' => 'k2' });
my $retry = $b->publish_ok('/pub', { message => 'two', sessionId => 's' },
                           headers => { 'Idempotency-Key' => 'k2' });
is($retry, $first, 'a retry on the other host gets the first messageId');

$rcv->wait_requests(sub { @_ >= 3 }, 15);
# a fourth (a host delivering what another took) would come within this
$rcv->wait_requests(sub { @_ > 3 }, 2);
my @got = $rcv->requests;

is_deeply([ sort map { $_->{id} } @got ], [ sort $id, $again, $first ],
          'each acknowledged message delivered once, by the host that took '
          . 'it; the idempotent retry not again');
ok(!(grep { !$_->{verified} } @got), 'all signed');

finish();
