#!/usr/bin/perl

# conf/presence.conf, run as it is: presence of a session's streams
# (guarded by the secret from the environment), history as JSON, the
# session_opened event on the first stream, and the session's open and
# close POSTed to the backend on 127.0.0.1:9000 (here the Flask receiver of
# the tests), signed with FORWARD_SECRET.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $SECRET = 'env-s3cret-' . $$;
my $FORWARD_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

my $probe = WebhookSSE::Test->new;
my $rcv = WebhookSSE::Receiver->start(python => $probe->dir,
                                      secret => $FORWARD_SECRET);

my $t = WebhookSSE::Test->example('presence.conf',
                                  ports => { 9000 => $rcv->port },
                                  env => { WEBHOOK_SECRET => $SECRET,
                                           FORWARD_SECRET => $FORWARD_SECRET })
        ->start;

sub presence
{
    my ($session, %h) = @_;
    return $t->request('GET', "/api/webhook/presence?sessionId=$session",
                       headers => { %h });
}

my $r = presence('abc123', 'X-Webhook-Secret' => $SECRET);
is_deeply($r->{json}, { sessionId => 'abc123', streams => 0, since => undef },
          'nobody reads abc123 yet');

$r = presence('abc123');
is($r->{status}, 401, 'presence without the secret: 401');

$r = presence('abc123', 'X-Webhook-Secret' => 'change-me');
is($r->{status}, 401, 'presence with the demo secret: 401');

my @s = map { $t->sse('/api/webhook/stream?sessionId=abc123') } 1 .. 2;
my @ev = $s[0]->wait_events(2, 5);
is($ev[1] && $ev[1]{json}{type}, 'session_opened',
   'the first stream gets session_opened');
$s[1]->wait_events(1, 5);

ok(WebhookSSE::Test::wait_until(sub {
       (presence('abc123', 'X-Webhook-Secret' => $SECRET)->{json}{streams}
        // -1) == 2 }, 10),
   'two windows read abc123');

$r = $t->request('POST', '/api/webhook/presence',
                 headers => { 'X-Webhook-Secret' => $SECRET,
                              'Content-Type' => 'application/json' },
                 body => '{"sessionIds":["abc123","def456"]}');
is_deeply([ map { $_->{streams} } @{ $r->{json}{sessions} // [] } ], [ 2, 0 ],
          'POST: both sessions at once');

my @ids = map { $t->publish_ok('/api/webhook',
                               { message => "m$_", sessionId => 'abc123' },
                               secret => $SECRET) } 1 .. 3;

$r = $t->request('GET', '/api/webhook/history?sessionId=abc123&limit=2');
is($r->{status}, 200, 'history answers');
is_deeply([ map { $_->{messageId} } @{ $r->{json}{events} } ],
          [ @ids[0, 1] ], 'history: the first page');
is($r->{json}{next}, $ids[1], 'history: next is the last one\'s id');

$r = $t->request('GET', "/api/webhook/history?sessionId=abc123"
                        . "&after=$r->{json}{next}");
is_deeply([ map { $_->{message} } @{ $r->{json}{events} } ], [ 'm3' ],
          'history: the rest after it');
is($r->{json}{next}, undef, 'history: nothing more');

my @got = $rcv->wait_requests(sub { @_ >= 1 }, 15);
is(scalar @got, 1, 'the backend got one event for the two windows');
is($got[0]{path}, '/hooks/presence', 'at its URL');
ok($got[0]{verified}, 'signed with FORWARD_SECRET');
is($got[0]{body}{type}, 'session_opened', 'session_opened');
is($got[0]{body}{sessionId}, 'abc123', 'of abc123');

my $t_close = time;
$_->close for @s;

ok(WebhookSSE::Test::wait_until(sub {
       (presence('abc123', 'X-Webhook-Secret' => $SECRET)->{json}{streams}
        // -1) == 0 }, 10),
   'nobody reads abc123 any more');

@got = $rcv->wait_requests(sub { @_ >= 2 }, 25);
is($got[1] && $got[1]{body}{type}, 'session_closed',
   'the backend gets session_closed');
cmp_ok($got[1] && $got[1]{t}, '>=', $t_close + 5 - 0.01,
       'after the 5 s grace period');
ok($got[1] && $got[1]{verified}, 'signed');

$t->stop;

finish();
