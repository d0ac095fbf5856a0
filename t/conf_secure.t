#!/usr/bin/perl

# conf/secure.conf as it is: signed publishes (Standard Webhooks, GitHub),
# retried deliveries answered once, streams opened only with a token the
# app minted, tokens kept out of the access log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256 hmac_sha256_hex);
use MIME::Base64 qw(encode_base64);
use Test::More;
use WebhookSSE::Test;

my $KEY = 'signing key bytes';
my %env = (WEBHOOK_SIGNING_SECRET => 'whsec_' . encode_base64($KEY, ''),
           GITHUB_WEBHOOK_SECRET => 'gh-secret',
           STREAM_TOKEN_SECRET => 'stream-secret');

my $t = WebhookSSE::Test->example('secure.conf', env => \%env)->start;

sub token
{
    my ($session) = @_;
    my $exp = int(time) + 600;
    return "$exp." . hmac_sha256_hex("$exp.$session", 'stream-secret');
}

sub signed
{
    my ($data, $id) = @_;
    my $body = json_encode($data);
    my $ts = int time;
    my $sig = 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", $KEY), '');
    return $t->publish('/api/webhook', $body,
                       headers => { 'webhook-id' => $id,
                                    'webhook-timestamp' => $ts,
                                    'webhook-signature' => $sig });
}

my $tok = token('visitor-1');

my $r = $t->request('GET', '/api/webhook/stream?sessionId=visitor-1');
is($r->{status}, 403, 'secure.conf: a stream without a token: 403');

my $s = $t->sse("/api/webhook/stream?sessionId=visitor-1&token=$tok");
$s->wait_events(1, 5);
is($s->status, 200, 'secure.conf: the stream with the app\'s token opens');

$r = $t->publish('/api/webhook', { message => 'unsigned',
                                   sessionId => 'visitor-1' });
is($r->{status}, 401, 'secure.conf: an unsigned publish: 401');

my @first = map { signed({ message => 'signed hello',
                           sessionId => 'visitor-1' }, 'msg_1') } 1 .. 3;
is(scalar(grep { $_->{status} == 200 } @first), 3,
   'secure.conf: a signed delivery and its two retries: 200');
is(scalar(grep { $_->{json}{messageId} eq $first[0]{json}{messageId} }
          @first), 3, 'secure.conf: the retries get the first messageId');

{
    my $body = json_encode({ action => 'completed',
                             workflow_job => { name => 'build' } });
    my $gh = $t->publish('/api/webhooks/github?sessionId=visitor-1', $body,
                         headers => {
                             'X-Hub-Signature-256' => 'sha256='
                                 . hmac_sha256_hex($body, 'gh-secret'),
                             'X-GitHub-Delivery' => 'abc-123' });
    is($gh->{status}, 200, 'secure.conf: a GitHub delivery (passthrough)');

    my @ev = $s->wait_for_event($gh->{json}{messageId}, 5);
    my @msgs = grep { ($_->{data} // '') =~ /webhook_message/ } @ev;
    is(scalar @msgs, 2, 'secure.conf: the stream got the signed message '
                        . 'once and the GitHub event');
    like($msgs[1]{data}, qr/"workflow_job":\{"name":"build"\}/,
         'secure.conf: the GitHub payload arrived whole');
}

$s->close;

wait_until(sub { $t->access_log =~ /stream/ }, 5);
unlike($t->access_log, qr/\Q$tok\E|token=/,
       'secure.conf: stream tokens stay out of the access log');

finish();
