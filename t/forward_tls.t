#!/usr/bin/perl

# webhook_forward over HTTPS to nginx itself as the receiver, with a test
# CA made here (openssl): certificate and host name are always verified
# (webhook_forward_trusted_certificate names the CA), a wrong certificate
# is never delivered to (dead, with libcurl's reason), and deliveries to
# one endpoint reuse a kept-alive connection.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use WebhookSSE::Test;

my $rcv = WebhookSSE::Test->new(http => '', workers => 1);
my $dir = $rcv->dir;

sub openssl
{
    my @cmd = ('openssl', @_);
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec @cmd;
        exit 127;
    }
    my $out = do { local $/; <$fh> };
    close $fh;
    die "@cmd: $out" if $?;
}

sub cert
{
    my ($name, $ca, $san) = @_;
    openssl(qw(req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes),
            '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr",
            '-subj', "/CN=$name");
    open my $fh, '>', "$dir/$name.ext" or die $!;
    print $fh "subjectAltName=$san\n";
    close $fh;
    openssl(qw(x509 -req -days 2), '-in', "$dir/$name.csr",
            '-CA', "$dir/$ca.crt", '-CAkey', "$dir/$ca.key",
            '-CAcreateserial', '-out', "$dir/$name.crt",
            '-extfile', "$dir/$name.ext");
}

for my $ca (qw(ca other-ca)) {
    openssl(qw(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1),
            qw(-nodes -days 2), '-keyout', "$dir/$ca.key",
            '-out', "$dir/$ca.crt", '-subj', "/CN=Test $ca");
}

cert('localhost', 'ca', 'DNS:localhost,IP:127.0.0.1');
cert('stranger', 'other-ca', 'DNS:localhost,IP:127.0.0.1');
cert('elsewhere', 'ca', 'DNS:elsewhere.example');

$rcv->set_config(http => <<"CONF");
    log_format rcv '\$server_port \$connection \$connection_requests \$request';

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 204; }
    }

    server {
        listen 127.0.0.1:%%PORT2%% ssl;
        ssl_certificate $dir/localhost.crt;
        ssl_certificate_key $dir/localhost.key;
        access_log $dir/logs/received.log rcv;
        location / { return 204; }
    }

    server {
        listen 127.0.0.1:%%PORT3%% ssl;
        ssl_certificate $dir/stranger.crt;
        ssl_certificate_key $dir/stranger.key;
        access_log $dir/logs/received.log rcv;
        location / { return 204; }
    }

    server {
        listen 127.0.0.1:%%PORT4%% ssl;
        ssl_certificate $dir/elsewhere.crt;
        ssl_certificate_key $dir/elsewhere.key;
        access_log $dir/logs/received.log rcv;
        location / { return 204; }
    }
CONF
$rcv->start;

my ($good, $stranger, $elsewhere) = map { $rcv->port($_) } 2, 3, 4;

my $t = WebhookSSE::Test->new(http => <<"CONF", workers => 1);
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;
    webhook_forward_retry 100ms 100ms;
    webhook_forward_trusted_certificate $dir/ca.crt;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /good {
            webhook_publish chat;
            webhook_forward https://localhost:$good/in;
            webhook_forward_concurrency 1;
        }
        location = /stranger {
            webhook_publish chat;
            webhook_forward https://localhost:$stranger/in;
        }
        location = /elsewhere {
            webhook_publish chat;
            webhook_forward https://localhost:$elsewhere/in;
        }
        location = /other {
            webhook_publish chat;
            webhook_forward https://localhost:$good/other;
            webhook_forward_trusted_certificate $dir/other-ca.crt;
        }
        location = /status { webhook_status chat; }
    }
CONF
$t->start;

sub received
{
    open my $fh, '<', "$dir/logs/received.log" or return ();
    return map { [ split ' ' ] } <$fh>;
}

sub endpoint
{
    my ($url) = @_;
    my $st = $t->request('GET', '/status')->{json};
    my ($ep) = grep { $_->{endpoint} eq $url } @{ $st->{outbound} // [] };
    return $ep // {};
}

$t->publish_ok('/good', { message => "m$_" }) for 1 .. 10;

my @got;
wait_until(sub { @got = grep { $_->[0] == $good } received(); @got >= 10 },
           15);
is(scalar @got, 10, 'HTTPS with the test CA: the 10 messages arrive');
my %conn = map { $_->[1] => 1 } @got;
is(scalar keys %conn, 1,
   'one after the other, over one kept-alive connection');
is_deeply([ map { $_->[2] } @got ], [ 1 .. 10 ],
          'its requests 1 to 10');

# a certificate of another CA

$t->publish_ok('/stranger', { message => 'x' });
my $ep;
wait_until(sub { $ep = endpoint("https://localhost:$stranger"); $ep->{dead} },
           15);
is($ep->{dead}, 1, 'a certificate of another CA: dead after the retries');
like($ep->{lastError}, qr/certificate/i,
     "with a clear error ($ep->{lastError})");
is(scalar(grep { $_->[0] == $stranger } received()), 0,
   'nothing was sent to it');

# a certificate for another name

$t->publish_ok('/elsewhere', { message => 'x' });
wait_until(sub { $ep = endpoint("https://localhost:$elsewhere");
                 $ep->{dead} }, 15);
is($ep->{dead}, 1, 'a certificate for another host name: dead');
like($ep->{lastError}, qr/name|subject/i,
     "with a clear error ($ep->{lastError})");
is(scalar(grep { $_->[0] == $elsewhere } received()), 0,
   'nothing was sent to it');

# the same server, with another CA trusted: the certificate is refused,
# a kept-alive connection made with the right CA is not reused for it

$t->publish_ok('/other', { message => 'x' });
wait_until(sub { $ep = endpoint("https://localhost:$good"); $ep->{dead} },
           15);
is($ep->{dead}, 1, 'webhook_forward_trusted_certificate of another CA: '
   . 'dead');
is(scalar(grep { $_->[4] =~ m{/other} } received()), 0,
   'nothing was sent');

ok($t->wait_error_log(qr/\[warn\].*localhost:$stranger: delivery \d+ dead/,
                      5), 'a warn for the dead delivery');

finish();
