#!/usr/bin/perl

# Secrets from the environment and graceful operations: "nginx -s reload"
# and "-s quit" from a shell without the secrets' variables work (the
# signaller needs no secret; the master keeps reading its own), and a
# start without them names every missing variable at once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64);
use Test::More;
use WebhookSSE::Test;

our $KEY = 'signal test key';
my %env = (WEBHOOK_SIGNING_SECRET => 'whsec_' . encode_base64($KEY, ''),
           GITHUB_WEBHOOK_SECRET => 'gh-secret',
           STREAM_TOKEN_SECRET => 'stream-secret');

delete local @ENV{ keys %env };

my $t = WebhookSSE::Test->example('secure.conf', env => \%env)->start;

sub signed
{
    my ($text, $id) = @_;
    my $body = json_encode({ message => $text, sessionId => 's' });
    my $ts = int time;
    my $sig = 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", $KEY), '');
    return $t->publish('/api/webhook', $body,
                       headers => { 'webhook-id' => $id,
                                    'webhook-timestamp' => $ts,
                                    'webhook-signature' => $sig });
}

is(signed('before', 'm1')->{status}, 200, 'signed publish: 200');

# from now on nginx is signalled from a shell without the variables
$t->{env} = {};

my @old = eval { $t->reload };
ok(@old, 'nginx -s reload without the variables: the new workers start')
    or diag $@;
unlike($t->error_log, qr/\[emerg\]/, 'and no [emerg]');
is(signed('after', 'm2')->{status}, 200,
   'after the reload the master still has the secrets: signed publish 200');
{
    local $KEY = 'another key';
    is(signed('forged', 'm3')->{status}, 401,
       'and still refuses a signature under another key');
}

my $master = $t->master_pid;
my ($rc, $out) = $t->_nginx('-s', 'quit');
is($rc, 0, 'nginx -s quit without the variables: rc 0') or diag $out;
ok(wait_until(sub { !kill(0, $master) }, 10), 'and the master quits');
$t->{running} = 0;

# ----- starting without them: every missing variable named at once -----

my $c = WebhookSSE::Test->example('secure.conf',
                                  expect_log => [qr/\[emerg\]/]);
my ($ok, $msg) = $c->test_config;
ok(!$ok, 'nginx -t without the variables fails');
for my $name (sort keys %env) {
    like($msg, qr/environment variable "$name" is not set/,
         "... naming $name");
}
like($msg, qr/3 webhook secrets could not be read/, '... and counting them');

finish();
