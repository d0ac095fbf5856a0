#!/usr/bin/perl

# docs/guide.md, "HTTP/2": the recipe works as printed: conf/nginx.conf
# with the guide's cleartext http2 listener added, the guide's curl
# --http2-prior-knowledge command prints what the guide shows, speaks
# HTTP/2, and a publish arrives on it.

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

my ($section) = $doc =~ /^### HTTP\/2\n(.*?)(?=^##)/ms
    or die "docs/guide.md: no HTTP/2 section\n";

my (%block, @out);
while ($section =~ /^```(\w*)\n(.*?)^```$/msg) {
    if ($1 eq '') { push @out, $2 } else { push @{ $block{$1} }, $2 }
}

my ($listen) = grep { /^listen 127\.0\.0\.1:8081 http2;$/m }
               @{ $block{nginx} };
ok($listen, 'the guide gives a cleartext http2 listener');
my ($curl) = grep { /--http2-prior-knowledge/ } @{ $block{sh} };
ok($curl, 'and a curl --http2-prior-knowledge command');
is(scalar @out, 1, 'and its output');

my $t = WebhookSSE::Test->example('nginx.conf',
                                  ports => { 8081 => '%%PORT2%%' });
chomp $listen;
$t->{conf} =~ s/^(\s*)(listen 127\.0\.0\.1:%%PORT%%;)$/$1$2\n$1$listen/m
    or die "conf/nginx.conf: no listen line\n";
$t->{conf} =~ s/\b127\.0\.0\.1:8081\b/127.0.0.1:%%PORT2%%/g;
$t->start;

my $port2 = $t->port(2);
$curl =~ s/127\.0\.0\.1:8081/127.0.0.1:$port2/g;
$curl =~ s/^curl /curl -v /;

my $file = $t->dir . '/logs/h2.out';
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    POSIX::setpgid(0, 0);
    open STDOUT, '>', $file or die "$file: $!";
    open STDERR, '>', "$file.err" or die "$file.err: $!";
    exec 'timeout', '30', 'bash', '-c', $curl;
    exit 127;
}

sub slurp
{
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return <$fh> // '';
}

wait_until(sub { slurp($file) =~ /"type":"connected".*\n\n/s }, 10);
is(slurp($file), $out[0], 'the stream starts as the guide shows');
like(slurp("$file.err"), qr/using HTTP\/2|HTTP\/2 200/,
     'curl speaks HTTP/2 to the listener');

my $id = $t->publish_ok('/api/webhook', { message => 'over h2',
                                          sessionId => 'h2' },
                        secret => 'change-me');
ok(wait_until(sub { index(slurp($file), "id: $id\n") >= 0 }, 10),
   'a publish to the HTTP/1.1 port arrives on the HTTP/2 stream');

kill 'TERM', -$pid;
waitpid $pid, 0;

finish();
