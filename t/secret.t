#!/usr/bin/perl

# webhook_secret: plain text, variables, env=NAME (read by the master from
# its environment, no "env" directive needed), file=PATH (first line,
# newline stripped; re-read on reload).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(
    env  => { WEBHOOK_SSE_TEST_SECRET => 'from-the-env' },
    http => <<'EOF');
    webhook_zone zone=chat:1m;

    map $host $wh_part {
        default "mapped";
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /text { webhook_publish chat; webhook_secret "s3cret"; }
        location = /var  { webhook_publish chat; webhook_secret $wh_part; }
        location = /mix  { webhook_publish chat;
                           webhook_secret "pre-${wh_part}-post"; }
        location = /env  { webhook_publish chat;
                           webhook_secret env=WEBHOOK_SSE_TEST_SECRET; }
        location = /file { webhook_publish chat;
                           webhook_secret file=%%PREFIX%%/secret.txt; }
        location = /open { webhook_publish chat; }

        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

sub write_secret
{
    my ($text) = @_;
    open my $fh, '>', $t->dir . '/secret.txt' or die $!;
    print $fh $text;
    close $fh;
}

write_secret("from-the-file\n");
$t->start;

my $s = $t->sse('/stream?sessionId=sec');
$s->wait_events(1, 5);

# check(path, secret or undef, expected status, name)
sub check
{
    my ($path, $secret, $status, $name) = @_;
    my $r = $t->publish($path, { message => "via $path", sessionId => 'sec' },
                        defined $secret ? (secret => $secret) : ());
    is($r->{status}, $status, "$name: $status");

    if ($status == 200) {
        my @ev = $s->wait_for_event($r->{json}{messageId}, 5);
        ok(@ev == 1, "$name: delivered, and nothing rejected was");
    } else {
        ok($r->{json} && !$r->{json}{success} && $r->{json}{error},
           "$name: JSON error") or diag $r->{body};
    }
}

check('/open', undef, 200, 'no secret configured, none sent');
check('/open', 'anything', 200, 'no secret configured, one sent');

check('/text', 's3cret', 200, 'text secret, right');
check('/text', 'S3cret', 401, 'text secret, wrong case');
check('/text', undef, 401, 'text secret, missing');
check('/text', '', 401, 'text secret, empty header');
check('/text', 's3cre', 401, 'text secret, prefix');
check('/text', 's3crets', 401, 'text secret, longer');
check('/text', ' s3cret', 200, 'text secret, leading space (HTTP strips '
                               . 'header whitespace)');

check('/var', 'mapped', 200, 'variable secret, right');
check('/var', '$wh_part', 401, 'variable secret, the variable\'s name');
check('/mix', 'pre-mapped-post', 200, 'text with variable, right');
check('/mix', 'pre-mapped', 401, 'text with variable, wrong');

check('/env', 'from-the-env', 200, 'env= secret, right');
check('/env', 'WEBHOOK_SSE_TEST_SECRET', 401, 'env= secret, the name');
check('/env', '', 401, 'env= secret, empty');
check('/env', undef, 401, 'env= secret, missing');

check('/file', 'from-the-file', 200, 'file= secret, right (newline '
                                     . 'stripped)');
check('/file', "from-the-file\t", 401, 'file= secret, with extra char');
check('/file', undef, 401, 'file= secret, missing');

{
    # GET health stays available (activeConnections counts our stream)
    my $r = $t->request('GET', '/text');
    is($r->{status}, 200, 'GET health on a secret location: 200');
}

# the file is read when the configuration loads: a reload picks up a new one
write_secret("rotated\nsecond line is ignored\n");
$s->close;
$t->reload;

$s = $t->sse('/stream?sessionId=sec');
$s->wait_events(1, 5);

check('/file', 'rotated', 200, 'file= secret after reload: new one');
check('/file', 'from-the-file', 401, 'file= secret after reload: old one '
                                     . 'refused');
check('/env', 'from-the-env', 200, 'env= secret after reload');
$s->close;

# A secret that cannot be read must never leave the location open: either
# the configuration is refused, or every publish is refused.
sub never_open
{
    my ($name, $directive, $path) = @_;

    my $bad = WebhookSSE::Test->new(expect_log => [qr/\[emerg\].*\Q$path\E/,
                                                   qr/webhook secrets? could not be read/],
                                    http => <<"EOF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /p { webhook_publish chat; $directive }
    }
EOF
    my ($ok, $out) = $bad->test_config;
    if (!$ok) {
        like($out, qr/\Q$path\E/, "$name: configuration refused, the "
                                  . "error names $path");
        return;
    }

    $bad->start;
    for my $secret (undef, '') {
        my $r = $bad->publish('/p', { message => 'x' },
                              defined $secret ? (secret => $secret) : ());
        is($r->{status}, 401, "$name: accepted config refuses a publish "
                              . "with " . (defined $secret ? 'an empty'
                                                           : 'no')
                              . " secret");
    }
    $bad->stop;
}

never_open('file= with a missing file',
           'webhook_secret file=%%PREFIX%%/missing.txt;', 'missing.txt');

{
    delete local $ENV{WEBHOOK_SSE_SURELY_UNSET};
    never_open('env= naming an unset variable',
               'webhook_secret env=WEBHOOK_SSE_SURELY_UNSET;',
               'WEBHOOK_SSE_SURELY_UNSET');
}

finish();
