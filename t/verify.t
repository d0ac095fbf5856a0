#!/usr/bin/perl

# webhook_verify: signed publishes.  Standard Webhooks (webhook-id,
# webhook-timestamp, webhook-signature: base64 HMAC-SHA256 of
# "id.timestamp.body" under a whsec_ key; several signatures and several
# keys for rotation; a timestamp tolerance) and GitHub's X-Hub-Signature-256
# (hex HMAC-SHA256 of the body).  Every vector is computed here with
# Digest::SHA, independently of the module.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256 hmac_sha256_hex);
use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;
use WebhookSSE::Test;

my $KEY1 = 'first key: 24 raw bytes!';
my $KEY2 = "second key\x00\xff with binary";
my $WHSEC1 = 'whsec_' . encode_base64($KEY1, '');
my $WHSEC2 = 'whsec_' . encode_base64($KEY2, '');
my $UNKNOWN = 'a key nobody configured';

my $t = WebhookSSE::Test->new(
    env  => { WEBHOOK_SSE_TEST_WHSEC => $WHSEC2 },
    http => <<"EOF");
    webhook_zone zone=chat:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        client_body_buffer_size 1k;
        client_max_body_size 1m;

        location = /standard {
            webhook_publish chat;
            webhook_verify standard $WHSEC1;
        }

        location = /rotation {
            webhook_publish chat;
            # the old key from the text, the new one from the environment
            webhook_verify standard $WHSEC1 env=WEBHOOK_SSE_TEST_WHSEC;
        }

        location = /strict {
            webhook_publish chat;
            webhook_verify standard $WHSEC1 tolerance=10s;
        }

        location = /github {
            webhook_publish chat;
            webhook_verify github "gh-secret" "gh-next";
        }

        location = /both {
            webhook_publish chat;
            webhook_secret "plain";
            webhook_verify github "gh-secret";
        }

        location /inherit {
            webhook_verify github "gh-secret";

            location = /inherit/on { webhook_publish chat; }
            location = /inherit/off {
                webhook_publish chat;
                webhook_verify off;
            }
        }

        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

$t->start;

my $s = $t->sse('/stream?sessionId=signed');
$s->wait_events(1, 5);

my $seq = 0;

sub body
{
    my ($text) = @_;
    return json_encode({ message => $text, sessionId => 'signed' });
}

sub standard_sig
{
    my ($key, $id, $ts, $body) = @_;
    return 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", $key), '');
}

# standard(PATH, BODY, key => K, id =>, ts =>, sig => (full header value))
sub standard
{
    my ($path, $body, %o) = @_;
    my $id = $o{id} // 'msg_' . ++$seq;
    my $ts = $o{ts} // time;
    my $sig = $o{sig} // standard_sig($o{key} // $KEY1, $id, $ts, $body);
    my %h = ('webhook-id' => $id, 'webhook-timestamp' => $ts,
             'webhook-signature' => $sig);
    delete $h{$_} for @{ $o{without} // [] };
    return $t->publish($path, $body, headers => \%h);
}

sub github
{
    my ($path, $body, %o) = @_;
    my $sig = $o{sig} // 'sha256=' . hmac_sha256_hex($body,
                                                     $o{key} // 'gh-secret');
    return $t->publish($path, $body,
                       headers => { 'X-Hub-Signature-256' => $sig,
                                    %{ $o{headers} // {} } },
                       defined $o{secret} ? (secret => $o{secret}) : (),
                       content_type => $o{content_type});
}

sub accepted
{
    my ($r, $name) = @_;
    is($r->{status}, 200, "$name: 200") or diag $r->{body};
    return unless $r->{status} == 200;
    my @ev = $s->wait_for_event($r->{json}{messageId}, 5);
    ok(@ev == 1, "$name: delivered");
    return $ev[0];
}

# refused(RESPONSE, qr/error/, name): 401 with a JSON error saying why,
# and nothing delivered (checked by the next accepted message arriving
# right after the last one: no event in between).
sub refused
{
    my ($r, $re, $name) = @_;
    is($r->{status}, 401, "$name: 401");
    like($r->{json} && $r->{json}{error} // '', $re, "$name: says why")
        or diag $r->{body};
    is($r->{json} && $r->{json}{success}, JSON::PP::false(),
       "$name: success false");
}

sub nothing_between
{
    my ($name) = @_;
    my $r = standard('/standard', body("marker $name"));
    my @ev = $s->wait_for_event($r->{json}{messageId}, 5);
    my @between = grep { ($_->{data} // '') !~ /marker/ } @ev;
    is(scalar @between, 0, "$name: nothing refused was delivered")
        or diag explain \@between;
}

# --- Standard Webhooks ----------------------------------------------------

{
    my $ev = accepted(standard('/standard', body('hello signed')),
                      'standard: valid signature');
    like($ev->{data}, qr/"message":"hello signed"/,
         'standard: the message is the signed body\'s');
}

refused(standard('/standard', body('x'), key => $UNKNOWN),
        qr/no webhook-signature matches/, 'standard: signed with another key');

{
    my $body = body('original');
    my $id = 'msg_tamper';
    my $ts = time;
    my $sig = standard_sig($KEY1, $id, $ts, $body);
    (my $tampered = $body) =~ s/original/tampered/;
    my $r = standard('/standard', $tampered, id => $id, ts => $ts,
                     sig => $sig);
    refused($r, qr/no webhook-signature matches/, 'standard: tampered body');
    unlike($r->{body}, qr/\Q$sig\E|\Q@{[substr($sig, 3, 20)]}\E/,
           'standard: the answer does not show the expected signature');

    refused(standard('/standard', $body, id => 'msg_other', ts => $ts,
                     sig => $sig),
            qr/no webhook-signature matches/, 'standard: signature moved to '
                                              . 'another webhook-id');
    refused(standard('/standard', $body, id => $id, ts => $ts + 1,
                     sig => $sig),
            qr/no webhook-signature matches/, 'standard: signature moved to '
                                              . 'another timestamp');
}

refused(standard('/standard', body('old'), ts => time - 600),
        qr/webhook-timestamp is too old/, 'standard: replay of a '
                                          . '10 minutes old delivery');
refused(standard('/standard', body('future'), ts => time + 600),
        qr/too far in the future/, 'standard: timestamp 10 minutes ahead');
accepted(standard('/standard', body('4 minutes late'), ts => time - 240),
         'standard: 4 minutes old is within the default 5 minutes');
refused(standard('/strict', body('strict'), ts => time - 60),
        qr/too old/, 'standard: tolerance=10s refuses a minute-old one');
accepted(standard('/strict', body('strict now')),
         'standard: tolerance=10s accepts a fresh one');
refused(standard('/standard', body('ts'), ts => '1700000000.5'),
        qr/Unix time in seconds/, 'standard: fractional timestamp');
refused(standard('/standard', body('ts'), ts => 'yesterday'),
        qr/Unix time in seconds/, 'standard: timestamp not a number');

for my $h ('webhook-id', 'webhook-timestamp', 'webhook-signature') {
    refused(standard('/standard', body("no $h"), without => [$h]),
            qr/missing \Q$h\E header/, "standard: without $h");
}

refused(standard('/standard', body('garbage'), sig => 'v1,!!!not base64'),
        qr/no webhook-signature matches/, 'standard: signature not base64');
refused(standard('/standard', body('short'),
                 sig => 'v1,' . encode_base64('short', '')),
        qr/no webhook-signature matches/, 'standard: signature too short');
refused(standard('/standard', body('empty'), sig => ''),
        qr/no webhook-signature matches/, 'standard: empty signature list');

{
    # several signatures: the sender signs with old and new keys at once
    my $body = body('list');
    my $id = 'msg_list';
    my $ts = time;
    my $good = standard_sig($KEY1, $id, $ts, $body);
    my $bad = standard_sig($UNKNOWN, $id, $ts, $body);
    accepted(standard('/standard', $body, id => $id, ts => $ts,
                      sig => "$bad  v1a,c2lnbmF0dXJl $good"),
             'standard: the matching one of several signatures');

    refused(standard('/standard', body('v2'), id => 'msg_v2', ts => $ts,
                     sig => 'v2,' . substr(standard_sig($KEY1, 'msg_v2', $ts,
                                                        body('v2')), 3)),
            qr/no webhook-signature matches/,
            'standard: a signature of an unknown version is not used');
}

{
    # Svix's own header names carry the same scheme
    my $body = body('from svix');
    my $ts = int time;
    my $r = $t->publish('/standard', $body, headers => {
        'svix-id' => 'msg_svix', 'svix-timestamp' => $ts,
        'svix-signature' => standard_sig($KEY1, 'msg_svix', $ts, $body) });
    accepted($r, 'standard: svix-id, svix-timestamp, svix-signature');

    $r = $t->publish('/standard', $body, headers => {
        'svix-id' => 'msg_svix2', 'svix-timestamp' => $ts,
        'svix-signature' => standard_sig($UNKNOWN, 'msg_svix2', $ts, $body) });
    refused($r, qr/no webhook-signature matches/, 'standard: svix headers, '
                                                   . 'wrong key');
}

# key rotation: both configured keys are accepted, others are not
accepted(standard('/rotation', body('old key')), 'rotation: the old key');
accepted(standard('/rotation', body('new key'), key => $KEY2),
         'rotation: the new key (from env=, with NUL and 0xff bytes)');
refused(standard('/rotation', body('no key'), key => $UNKNOWN),
        qr/no webhook-signature matches/, 'rotation: any other key');

{
    # a body nginx buffered to a temporary file (over 1k) is verified whole
    my $big = json_encode({ message => 'x' x 20000 . 'END',
                            sessionId => 'signed' });
    my $ev = accepted(standard('/standard', $big),
                      'standard: 20 KB body read from a temporary file');
    like($ev->{data} // '', qr/x{100}END"/, 'standard: the big body arrived '
                                            . 'whole');

    my $bad = $big;
    substr($bad, 15000, 1, 'y');
    my $id = 'msg_big';
    my $ts = time;
    refused(standard('/standard', $bad, id => $id, ts => $ts,
                     sig => standard_sig($KEY1, $id, $ts, $big)),
            qr/no webhook-signature matches/,
            'standard: one byte changed deep in a buffered body');
}

nothing_between('standard');

# --- GitHub ---------------------------------------------------------------

accepted(github('/github', body('from github')), 'github: valid signature');
accepted(github('/github', body('next key'), key => 'gh-next'),
         'github: the second configured secret');
accepted(github('/github', body('upper'),
                sig => 'sha256=' . uc hmac_sha256_hex(body('upper'),
                                                      'gh-secret')),
         'github: hex digits in upper case');
refused(github('/github', body('other'), key => 'wrong'),
        qr/X-Hub-Signature-256 does not match/, 'github: another secret');
refused(github('/github', body('sha1'),
               sig => 'sha1=' . hmac_sha256_hex(body('sha1'), 'gh-secret')),
        qr/must be sha256=/, 'github: sha1= prefix');
refused(github('/github', body('short'), sig => 'sha256=abcd'),
        qr/must be sha256=/, 'github: short digest');
refused(github('/github', body('nonhex'), sig => 'sha256=' . 'g' x 64),
        qr/must be sha256=/, 'github: not hex');
refused($t->publish('/github', body('none')),
        qr/missing X-Hub-Signature-256/, 'github: no signature header');

{
    my $body = body('github tamper');
    my $sig = 'sha256=' . hmac_sha256_hex($body, 'gh-secret');
    (my $tampered = $body) =~ s/tamper/tampe!/;
    refused(github('/github', $tampered, sig => $sig),
            qr/does not match/, 'github: tampered body');
}

# GitHub's "application/x-www-form-urlencoded" deliveries: payload=<JSON>,
# signed as sent
{
    my $json = json_encode({ message => "form & co: 100% \x{e9}+ok",
                             sessionId => 'signed', n => 1 });
    my $esc = $json;
    $esc =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    # GitHub writes spaces as '+'
    $esc =~ s/%20/+/g;
    my $form = "payload=$esc";
    my $formct = 'application/x-www-form-urlencoded';
    my $ev = accepted(github('/github', $form,
                             content_type => $formct),
                      'github form delivery');
    is($ev && $ev->{json}{message}, "form & co: 100% \x{e9}+ok",
       'github form delivery: the payload decoded ("+" a space, %XX bytes)');
    is($ev && $ev->{json}{n}, 1, 'github form delivery: every field');

    # the signature covers the form as sent, not the decoded JSON
    refused(github('/github', $form, content_type => $formct,
                   sig => 'sha256=' . hmac_sha256_hex($json, 'gh-secret')),
            qr/does not match/, 'github form: signed JSON, not the form');

    my $r = github('/github', 'other=1&x=2',
                   content_type => $formct);
    is($r->{status}, 400, 'github form without payload=: 400');
    like($r->{json}{error} // '', qr/payload= field/, '... saying so');

    $r = github('/github', 'payload=%7B%2',
                content_type => $formct);
    is($r->{status}, 400, 'github form with a broken escape: 400');

    $r = $t->publish('/standard', 'payload=%7B%7D', content_type => $formct);
    is($r->{status}, 415, 'a form body elsewhere: 415');

    $r = $t->publish('/github', 'x', content_type => 'text/plain');
    is($r->{status}, 415, 'github: text/plain is 415');
    is($r->{json}{error} // '', 'Content-Type must be application/json or '
                                . 'application/x-www-form-urlencoded',
       'github: the 415 names both types');
}

# webhook_secret and webhook_verify together: both must pass
accepted(github('/both', body('both'), secret => 'plain'),
         'secret + verify: both right');
is(github('/both', body('no secret'))->{status}, 401,
   'secret + verify: signature alone is not enough');
is($t->publish('/both', body('no sig'), secret => 'plain')->{status}, 401,
   'secret + verify: secret alone is not enough');

# inheritance, and "off" in a nested location
is($t->publish('/inherit/on', body('unsigned'))->{status}, 401,
   'verify inherited from the enclosing location');
accepted($t->publish('/inherit/off', body('open')),
         'webhook_verify off in a nested location');

nothing_between('github');

# health GET needs no signature
is($t->request('GET', '/standard')->{status}, 200,
   'GET health on a verified location: 200');

# --- configuration errors -------------------------------------------------

sub bad_config
{
    my ($directive, $re, $name) = @_;
    my $bad = WebhookSSE::Test->new(expect_log => [qr/\[emerg\]/],
                                    http => <<"EOF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /p { webhook_publish chat; $directive }
    }
EOF
    my ($ok, $out) = $bad->test_config;
    ok(!$ok, "config refused: $name");
    like($out, $re, "config refused: $name: the error says why");
}

bad_config('webhook_verify standard "whsec_%%%";',
           qr/base64/, 'standard secret not base64');
bad_config('webhook_verify github "s" tolerance=1m;',
           qr/tolerance= only with "standard"/, 'tolerance with github');
bad_config('webhook_verify standard tolerance=1m;',
           qr/at least one secret/, 'no secret');
bad_config('webhook_verify hmac "s";', qr/invalid scheme "hmac"/,
           'unknown scheme');
bad_config('webhook_verify standard env=WEBHOOK_SSE_TEST_UNSET_VAR;',
           qr/WEBHOOK_SSE_TEST_UNSET_VAR.*not set/, 'env= variable unset');
bad_config("webhook_verify github a; webhook_verify github b;",
           qr/is duplicate/, 'twice in a location');
bad_config('webhook_verify off "s";', qr/takes no secrets/, 'off with a '
                                                            . 'secret');

$s->close;

# the secrets never reach the error log, even at info level
{
    my $log = $t->error_log;
    for my $secret ($WHSEC1, $WHSEC2, 'gh-secret', 'gh-next', 'plain') {
        unlike($log, qr/\Q$secret\E/, "error_log never shows the secret "
                                      . substr($secret, 0, 8) . '..');
    }
}

finish();
