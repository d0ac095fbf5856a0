#!/usr/bin/perl

# The code in docs/security.md works as printed: each token minting
# example (shell, Python, Node.js) makes a token that opens the stream of
# its session and no other, and the signed test webhook is accepted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempfile);
use MIME::Base64 qw(encode_base64);
use Test::More;
use WebhookSSE::Test;

my $doc = do {
    open my $fh, '<', "$FindBin::Bin/../docs/security.md" or die $!;
    local $/;
    <$fh>;
};

# the fenced blocks of a section, as [language, code]
sub blocks
{
    my ($heading) = @_;
    my ($section) = $doc =~ /^## \Q$heading\E\n(.*?)(?=^## |\z)/ms
        or die "docs/security.md: no section \"$heading\"\n";
    my @b;
    while ($section =~ /^```(\w+)\n(.*?)^```$/msg) {
        push @b, [$1, $2];
    }
    return @b;
}

sub have { system("command -v $_[0] >/dev/null 2>&1") == 0 }

my %runner = (sh => ['bash'], python => ['python3'], js => ['node']);

sub run_block
{
    my ($lang, $code, %env) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $code;
    close $fh;
    local @ENV{ keys %env } = values %env;
    my $cmd = join(' ', @{ $runner{$lang} }, $file);
    my $out = `$cmd 2>&1`;
    return ($? == 0, $out);
}

my $KEY = 'doc signing key';

my $t = WebhookSSE::Test->new(http => <<"EOF")->start;
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /api/webhook {
            webhook_publish chat;
            webhook_verify standard whsec_@{[encode_base64($KEY, '')]};
        }
        location = /api/webhook/stream {
            webhook_stream chat;
            webhook_replay 0;
            webhook_stream_token "doc-secret";
        }
    }
EOF

my @mint = grep { $_->[0] ne 'js' || $_->[1] =~ /console\.log/ }
           blocks('Minting stream tokens');
is(scalar @mint, 3, 'docs: three minting examples (sh, python, js)');

for my $b (@mint) {
    my ($lang, $code) = @$b;
    my $tool = $runner{$lang}[0];

    SKIP: {
        skip "$tool is not installed", 4 unless have($tool);
        skip 'openssl is not installed', 4
            if $lang eq 'sh' && !have('openssl');

        my ($ok, $out) = run_block($lang, $code,
                                   STREAM_TOKEN_SECRET => 'doc-secret',
                                   SESSION_ID => 'user 7/room');
        ok($ok, "docs: the $lang example runs") or diag $out;
        chomp $out;
        like($out, qr/^\d{10,}\.[0-9a-f]{64}$/, "docs: $lang prints a token");

        my $s = $t->sse('/api/webhook/stream?sessionId=user%207%2Froom&token='
                        . $out);
        $s->wait_events(1, 5);
        is($s->status, 200, "docs: the $lang token opens its session");
        $s->close;

        my $r = $t->request('GET', "/api/webhook/stream?sessionId=user%207"
                                   . "&token=$out");
        is($r->{status}, 403, "docs: the $lang token opens no other session");
    }
}

my ($signed) = blocks('Sending a signed test webhook');

SKIP: {
    skip 'curl or openssl is not installed', 3
        unless have('curl') && have('openssl');

    my $s = $t->sse('/api/webhook/stream?token='
                    . do {
                        require Digest::SHA;
                        my $e = int(time) + 60;
                        "$e." . Digest::SHA::hmac_sha256_hex("$e.demo",
                                                             'doc-secret');
                      }
                    . '&sessionId=demo');
    $s->wait_events(1, 5);

    my ($ok, $out) = run_block('sh', $signed->[1],
        WEBHOOK_SIGNING_SECRET => 'whsec_' . encode_base64($KEY, ''),
        WEBHOOK_URL => 'http://127.0.0.1:' . $t->port . '/api/webhook');
    ok($ok, 'docs: the signed test webhook example runs') or diag $out;
    like($out, qr/"success":true/, 'docs: the signed webhook is accepted')
        or diag $out;
    my ($id) = $out =~ /"messageId":"([^"]+)"/;
    ok($id && $s->wait_for_event($id, 5), 'docs: and delivered');
    $s->close;
}

finish();
