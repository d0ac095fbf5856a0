#!/usr/bin/perl

# docs/guide.md, "Request/response flows keyed by a request id": the
# guide's own curl commands, run against conf/request-id.conf as it is,
# print what the guide shows, byte for byte (ids and timestamps aside):
# the stream's connected event, {"received":true,"request_id":..} for the
# loopback POST without a secret and the one with it, then both updates
# as posted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use WebhookSSE::Test;

plan skip_all => 'curl is not installed'
    unless system('command -v curl > /dev/null 2>&1') == 0;

my $doc = do {
    open my $fh, '<', "$FindBin::Bin/../docs/guide.md" or die $!;
    local $/;
    <$fh>;
};

my $heading = '## Request/response flows keyed by a request id';
my ($section) = $doc =~ /^\Q$heading\E\n(.*?)(?=^## |\z)/ms
    or die "docs/guide.md: no request-id section\n";

my ($try) = $section =~ /^(Try it .*)\z/ms or die "no \"Try it\" part\n";

my (@sh, @out);
while ($try =~ /^```(\w*)\n(.*?)^```$/msg) {
    if ($1 eq 'sh') { push @sh, $2 } elsif ($1 eq '') { push @out, $2 }
}

is(scalar @sh, 3, 'the guide shows three commands');
is(scalar @out, 4, 'and four outputs');
like($sh[0], qr/^curl -N /, 'the first opens the stream');

my $t = WebhookSSE::Test->example('request-id.conf',
                                  env => { WEBHOOK_SECRET => 's3cret' })
        ->start;
my $port = $t->port;

s/127\.0\.0\.1:8080/127.0.0.1:$port/g for @sh;

sub mask
{
    my ($text) = @_;
    $text =~ s/\b\d{13}-\d+\b/<id>/g;
    $text =~ s/"timestamp":\d+/"timestamp":<ms>/g;
    return $text;
}

# the stream, in the background, into a file
my $file = $t->dir . '/logs/stream.out';
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    POSIX::setpgid(0, 0);
    open STDOUT, '>', $file or die "$file: $!";
    open STDERR, '>', '/dev/null';
    exec 'timeout', '30', 'bash', '-c', $sh[0];
    exit 127;
}

sub stream_text
{
    open my $fh, '<', $file or return '';
    local $/;
    return <$fh> // '';
}

wait_until(sub { stream_text() =~ /"type":"connected".*\n\n/s }, 10);
is(stream_text(), $out[0], 'curl -N: the stream starts as the guide shows');

for my $i (1, 2) {
    open my $fh, '-|', 'bash', '-c', "exec 2> /dev/null; $sh[$i]"
        or die "bash: $!";
    my $body = do { local $/; <$fh> } // '';
    close $fh;
    is($body, $out[$i], "POST $i: the answer is byte for byte the guide's")
        or diag $body;
}

wait_until(sub { (() = stream_text() =~ /^data: .*\n\n/mg) >= 3 }, 10);
kill 'TERM', -$pid;
waitpid $pid, 0;

is(mask(stream_text()), mask($out[0] . $out[3]),
   'the stream shows both updates as the guide does (ids, times aside)');

finish();
