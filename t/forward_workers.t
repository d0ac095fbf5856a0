#!/usr/bin/perl

# webhook_forward: deliveries live in the zone, attempts are leased.  A
# worker killed with -9 in the middle of an attempt leaves a lease that
# expires (webhook_forward_timeout + 2 s), then another worker makes the
# attempt again; a worker that exits on reload hands its attempts back at
# once.  Either way the delivery is made, and its success recorded once.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

# kill -9 of the worker holding an attempt (the only worker)

my $t = WebhookSSE::Test->new(http => '', workers => 1,
                              expect_log => [qr/exited on signal 9/]);
my $rcv = WebhookSSE::Receiver->start(python => $t->dir, plan => 'hang,200');
my $port = $rcv->port;

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;
    webhook_forward_timeout 3s;
    webhook_forward_retry 100ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pub {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$port/in;
        }
        location = /status { webhook_status chat; }
    }
CONF
$t->start;

sub endpoint
{
    my ($t, $port) = @_;
    my $st = $t->request('GET', '/status')->{json};
    my ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$port" }
               @{ $st->{outbound} // [] };
    return $ep // {};
}

my $id = $t->publish_ok('/pub', { message => 'in flight' });
my @a = $rcv->wait_requests(sub { @_ >= 1 }, 10);
is(scalar @a, 1, 'the first attempt is in flight (the receiver hangs)');
is(endpoint($t, $port)->{inflight}, 1, 'status: 1 in flight');

my ($worker) = $t->worker_pids;
my $killed = time;
kill 'KILL', $worker;
ok($t->wait_pids_gone([$worker], 5), 'its worker is killed with -9');

@a = $rcv->wait_requests(sub { @_ >= 2 }, 15);
is(scalar @a, 2, 'the attempt is made again by the new worker');
is($a[1]{id}, $id, 'with the same webhook-id');
# the lease ends 5 s after the attempt was taken, a little before the
# receiver saw it: well after an immediate retry would have come
cmp_ok($a[1]{t} - $a[0]{t}, '>=', 3,
       'once the lease has expired (timeout 3s + 2s)');

my $ep;
wait_until(sub { $ep = endpoint($t, $port); $ep->{delivered} }, 10);
is($ep->{delivered}, 1, 'delivered, recorded once');
is($ep->{inflight}, 0, 'nothing left in flight');
is($ep->{queued}, 0, 'nothing left queued');

# reload with an attempt in flight: the old worker hands it back

my $t2 = WebhookSSE::Test->new(http => '', workers => 2);
my $rcv2 = WebhookSSE::Receiver->start(python => $t2->dir,
                                       plan => 'hang,200');
my $port2 = $rcv2->port;

$t2->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;
    webhook_forward_timeout 20s;
    webhook_forward_retry 100ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pub {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$port2/in;
        }
        location = /status { webhook_status chat; }
    }
CONF
$t2->start;

$id = $t2->publish_ok('/pub', { message => 'across reload' });
@a = $rcv2->wait_requests(sub { @_ >= 1 }, 10);
is(scalar @a, 1, 'an attempt is in flight');

my @old = $t2->reload;
my $reloaded = time;
ok($t2->wait_pids_gone(\@old, 10), 'the old workers exit at once');

@a = $rcv2->wait_requests(sub { @_ >= 2 }, 10);
is(scalar @a, 2, 'a new worker makes the attempt again');
is($a[1]{id}, $id, 'with the same webhook-id');
cmp_ok($a[1]{t} - $reloaded, '<', 10,
       'without waiting for the lease (20s + 2s) to expire');
ok($t2->wait_error_log(qr/1 attempts in flight handed back on exit/, 5),
   'the exiting worker says it handed the attempt back');

wait_until(sub { $ep = endpoint($t2, $port2); $ep->{delivered} }, 10);
is($ep->{delivered}, 1, 'delivered, recorded once');
is($ep->{inflight}, 0, 'nothing left in flight');

# a reload that fails leaves the running configuration's outbound
# settings to the workers the master starts later

my $t3 = WebhookSSE::Test->new(http => '', workers => 1,
                               expect_log => [qr/exited on signal 9/,
                                              qr/unknown directive/]);
my $rcv3 = WebhookSSE::Receiver->start(python => $t3->dir);
my $port3 = $rcv3->port;
my $good = <<"CONF";
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pub {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$port3/in;
        }
    }
CONF
$t3->set_config(http => $good);
$t3->start;

$t3->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pub { webhook_publish chat; }
    }
    no_such_directive_here;
CONF
$t3->write_config;
my ($worker3) = $t3->worker_pids;
# nginx -s reload would refuse to signal with a broken file: SIGHUP
kill 'HUP', $t3->master_pid;
ok($t3->wait_error_log(qr/unknown directive "no_such_directive_here"/, 10),
   'a reload with a broken configuration fails');

kill 'KILL', $worker3;
ok($t3->wait_pids_gone([$worker3], 5), 'then the worker is killed');
ok(wait_until(sub { my @w = $t3->worker_pids; @w == 1 && $w[0] != $worker3 },
              10), 'and the master starts another');

$id = $t3->publish_ok('/pub', { message => 'still forwarded' });
@a = $rcv3->wait_requests(sub { @_ >= 1 }, 10);
is(scalar @a, 1, 'the new worker still forwards (running configuration)');
$t3->set_config(http => $good);

finish();
