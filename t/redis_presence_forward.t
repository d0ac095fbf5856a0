#!/usr/bin/perl

# webhook_presence_forward with webhook_redis: opens and closes are per
# host (each zone counts the streams it holds), so a session read on two
# hosts opens and closes on each, under webhook-ids of their own (the
# hosts share the cluster's epoch, not their zones' nonces).

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
my $rcv = WebhookSSE::Receiver->start(node => $probe->dir,
                                      secret => $SECRET);
my $to = 'http://127.0.0.1:' . $rcv->port . '/presence';

sub host
{
    my $t = WebhookSSE::Test->new(workers => 1, http => <<"EOF")->start;
    webhook_zone zone=chat:1m history=50;
    webhook_redis chat $url prefix=pf:;
    webhook_presence_forward chat $to secret=$SECRET;
    webhook_forward_rate off;
    webhook_presence_grace 1s;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
        }
    }
EOF

    ok($t->wait_error_log(qr/in sync with the cluster/, 15),
       "host $t->{dir}: in sync with the cluster");
    return $t;
}

my ($a, $b) = (host(), host());

sub events
{
    my ($type, @req) = @_;
    return grep { ref $_->{body} eq 'HASH' && $_->{body}{type} eq $type
                  && $_->{body}{sessionId} eq 's' } @req;
}

my $sa = $a->sse('/stream?sessionId=s');
my @ev = $sa->wait_events(1, 5);
is($ev[0] && $ev[0]{json}{type}, 'connected', 'a stream of s on host a');

my @got = $rcv->wait_requests(sub { events('session_opened', @_) >= 1 }, 15);
is(scalar events('session_opened', @got), 1, 'host a: s opened');

my $sb = $b->sse('/stream?sessionId=s');
@ev = $sb->wait_events(1, 5);
is($ev[0] && $ev[0]{json}{type}, 'connected', 'a stream of s on host b');

@got = $rcv->wait_requests(sub { events('session_opened', @_) >= 2 }, 15);
my @opened = events('session_opened', @got);
is(scalar @opened, 2, 'host b: s opened there too (per host)');
isnt($opened[0]{id}, $opened[1]{id}, 'under a webhook-id of its own');

$_->close for $sa, $sb;

@got = $rcv->wait_requests(sub { events('session_closed', @_) >= 2 }, 20);
my @closed = events('session_closed', @got);
is(scalar @closed, 2, 'each host closes s after its grace period');
isnt($closed[0]{id}, $closed[1]{id}, 'under webhook-ids of their own');

my %ids = map { $_->{id} => 1 } @opened, @closed;
is(scalar keys %ids, 4, 'four events, four webhook-ids');
is(scalar(grep { !$_->{verified} } @got), 0, 'all signed');

finish();
