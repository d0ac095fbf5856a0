#!/usr/bin/perl

# The receivers of docs/guide.md ("Notifying your systems") work as
# printed: the Flask and the Express one, fed by webhook_forward with a
# whsec_ secret, accept each message once (a retry is acknowledged, not
# done twice) and refuse a request whose signature does not match.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256);
use IO::Socket::INET;
use MIME::Base64 qw(decode_base64 encode_base64);
use Test::More;
use Time::HiRes qw(time sleep);
use WebhookSSE::Test;

my $SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
my $KEY = decode_base64('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');

my $doc = do {
    open my $fh, '<', "$FindBin::Bin/../docs/guide.md" or die $!;
    local $/;
    <$fh>;
};

my ($section) = $doc =~ /^### Receivers that check the signature\n(.*?)(?=^##)/ms
    or die "docs/guide.md: no receivers section\n";
my %code;
$code{$1} = $2 while $section =~ /^```(python|js)\n(.*?)^```/msg;
ok($code{python} && $code{js}, 'the guide has a Flask and an Express receiver');

my $t = WebhookSSE::Test->new(http => '');
my $dir = $t->dir;
my @pids;

sub free_port
{
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die $!;
    return $s->sockport;
}

sub start_receiver
{
    my ($lang) = @_;
    my $file = "$dir/receiver." . ($lang eq 'js' ? 'js' : 'py');
    open my $fh, '>', $file or die $!;
    print $fh $code{$lang};
    close $fh;

    my $port = free_port();
    my $out = "$dir/logs/receiver-$lang.out";
    my $pid = fork // die $!;
    if ($pid == 0) {
        $ENV{PORT} = $port;
        $ENV{FORWARD_SECRET} = $SECRET;
        $ENV{NODE_PATH} = "$FindBin::Bin/receivers/node_modules";
        open STDOUT, '>', $out;
        open STDERR, '>', "$out.err";
        exec($lang eq 'js' ? 'node' : '/usr/bin/python3', $file);
        exit 127;
    }
    push @pids, $pid;

    my $up = wait_until(sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
    }, 20);
    die "the $lang receiver did not start\n" unless $up;
    return ($port, $out);
}

END { local $?; kill 'TERM', @pids; waitpid($_, 0) for @pids; }

my ($pyport, $pyout) = start_receiver('python');
my ($jsport, $jsout) = start_receiver('js');

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /api/webhook {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$pyport/hooks/chat
                            secret=$SECRET format=conversation;
            webhook_forward http://127.0.0.1:$jsport/hooks/chat
                            secret=$SECRET format=conversation;
        }
        location = /status { webhook_status chat; }
    }
CONF
$t->start;

my @ids = map { $t->publish_ok('/api/webhook', { message => "Hello $_",
                                                 sessionId => 'abc' }) } 1, 2;

sub lines
{
    my ($file) = @_;
    open my $fh, '<', $file or return ();
    return grep { /^received / } <$fh>;
}

for my $r ([ 'Flask', $pyout, $pyport ], [ 'Express', $jsout, $jsport ]) {
    my ($name, $out, $port) = @$r;
    my @l;
    wait_until(sub { @l = lines($out); @l >= 2 }, 15);
    is_deeply([ sort @l ], [ map { "received $ids[$_ - 1] Hello $_\n" } 1, 2 ],
              "$name: each message received, signature checked");

    my $st;
    wait_until(sub {
        $st = $t->request('GET', '/status')->{json};
        my ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$port" }
                   @{ $st->{outbound} };
        $ep && $ep->{delivered} == 2;
    }, 10);
    my ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$port" }
               @{ $st->{outbound} };
    is($ep->{lastStatus}, 204, "$name: answers 204");

    # a retry: the same webhook-id twice, answered, done once
    my $ts = int time;
    my $dup = '{"conversation_id":"abc","data":{"content":"dup"}}';
    my $sig = 'v1,' . encode_base64(hmac_sha256("dup-1.$ts.$dup", $KEY), '');
    my @st = map { $t->request('POST', '/hooks/chat', port => $port,
        headers => [ 'Content-Type' => 'application/json',
                     'webhook-id' => 'dup-1', 'webhook-timestamp' => $ts,
                     'webhook-signature' => $sig ],
        body => $dup)->{status} } 1, 2;
    is_deeply(\@st, [204, 204], "$name: a repeat is answered 204");
    wait_until(sub { lines($out) >= 3 }, 5);
    is(scalar(grep { /^received dup-1 dup$/ } lines($out)), 1,
       "$name: and done once");

    # a forged request
    my $body = '{"conversation_id":"abc","data":{"content":"forged"}}';
    my $forged = $t->request('POST', '/hooks/chat', port => $port,
        headers => [ 'Content-Type' => 'application/json',
                     'webhook-id' => 'forged-1',
                     'webhook-timestamp' => $ts,
                     'webhook-signature' =>
                         'v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' ],
        body => $body);
    is($forged->{status}, 401, "$name: a wrong signature is refused");
}

finish();
