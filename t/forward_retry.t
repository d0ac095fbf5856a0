#!/usr/bin/perl

# webhook_forward: what is retried and when.  Success is any 2xx; network
# errors, timeouts, 5xx, 429 and 408 are retried after the waits of
# webhook_forward_retry (Retry-After when longer); other 4xx and 3xx fail
# at once (no redirect is followed); 410 also disables the endpoint until
# reload.  After the last retry a delivery is dead: kept with its last
# status, one warn in the error log.  One delivery keeps the real schedule
# (attempts at 0, 4, 12 and 22 s) across a reload.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $t = WebhookSSE::Test->new(http => '');
my $dir = $t->dir;

my $flaky = WebhookSSE::Receiver->start(node => $dir,
                                        plan => '503,503,503,200');
my $broken = WebhookSSE::Receiver->start(python => $dir, plan => '500');
my $limited = WebhookSSE::Receiver->start(node => $dir, plan => '429:2,200');
my $gone = WebhookSSE::Receiver->start(node => $dir, plan => '410');
my $bad = WebhookSSE::Receiver->start(node => $dir, plan => '400');
my $hanging = WebhookSSE::Receiver->start(python => $dir, plan => 'hang,200');

my ($fp, $bp, $lp, $gp, $xp, $hp) = map { $_->port }
    $flaky, $broken, $limited, $gone, $bad, $hanging;

sub location
{
    my ($path, $url, @extra) = @_;
    my $extra = join '', map { "            $_\n" } @extra;
    return <<"LOC";
        location = $path {
            webhook_publish chat;
            webhook_forward $url;
$extra        }
LOC
}

my $http = <<"CONF";
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /status { webhook_status chat; }
        location = /moved { return 302 /elsewhere; }
        location = /elsewhere { return 204; }

CONF

$http .= location('/real', "http://127.0.0.1:$fp/real");
$http .= location('/short', "http://127.0.0.1:$fp/short",
                  'webhook_forward_retry 300ms 300ms 300ms;');
$http .= location('/dead', "http://127.0.0.1:$bp/dead",
                  'webhook_forward_retry 200ms 200ms;');
$http .= location('/limited', "http://127.0.0.1:$lp/limited",
                  'webhook_forward_retry 100ms;');
$http .= location('/gone', "http://127.0.0.1:$gp/gone",
                  'webhook_forward_retry 100ms;');
$http .= location('/bad', "http://127.0.0.1:$xp/bad",
                  'webhook_forward_retry 100ms;');
$http .= location('/hang', "http://127.0.0.1:$hp/hang",
                  'webhook_forward_retry 200ms;',
                  'webhook_forward_timeout 1s;');
$http .= location('/redirect', 'http://127.0.0.1:%%PORT%%/moved',
                  'webhook_forward_retry 100ms;');
$http .= location('/refused', 'http://127.0.0.1:%%PORT2%%/',
                  'webhook_forward_retry 100ms 100ms;');
$http .= "    }\n";

$t->set_config(http => $http);
$t->start;

sub endpoint
{
    my ($port) = @_;
    my $st = $t->request('GET', '/status')->{json};
    my ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$port" }
               @{ $st->{outbound} // [] };
    return $ep // {};
}

sub wait_endpoint
{
    my ($port, $cond, $timeout) = @_;
    my $ep;
    wait_until(sub { $ep = endpoint($port); $cond->($ep) }, $timeout // 10);
    return $ep;
}

# the real schedule: runs while the rest is tested

my $real_id = $t->publish_ok('/real', { message => 'real schedule' });

# the same with a short schedule: fails 3 times, then accepted

my $id = $t->publish_ok('/short', { message => 'short' });
my @a = grep { $_->{path} eq '/short' } $flaky->wait_requests(
    sub { grep({ $_->{path} eq '/short' } @_) >= 4 }, 15);

is(scalar @a, 4, 'fails 3 times, accepted the 4th: 4 attempts');
is_deeply([ map { $_->{id} } @a ], [ ($id) x 4 ],
          'the same webhook-id on every attempt');
is_deeply([ map { $_->{answer} } @a ], [qw(503 503 503 200)],
          'answered 503, 503, 503, 200');
my @gaps = map { $a[$_]{t} - $a[$_ - 1]{t} } 1 .. 3;
ok(!grep({ $_ < 0.28 } @gaps), 'each retry waits its 300ms')
    or diag "gaps: @gaps";

my $ep = wait_endpoint($fp, sub { $_[0]{delivered} });
is($ep->{delivered}, 1, 'status: delivered once');
cmp_ok($ep->{retried}, '>=', 3,
       'status: retried 3 times (and the real schedule\'s)');

# always 500: dead after the last retry, one warn

$id = $t->publish_ok('/dead', { message => 'never' });
$ep = wait_endpoint($bp, sub { $_[0]{dead} });
is($ep->{dead}, 1, 'always 500: dead after the last retry');
is($ep->{kept}, 1, 'kept for redrive');
is($ep->{lastStatus}, 500, 'with its last status');
is($ep->{lastError}, 'HTTP 500', 'and error');
is(scalar(grep { $_->{id} eq $id } $broken->requests), 3,
   '3 attempts: the first and 2 retries');

my $dead_re = qr/\[warn\].*delivery \d+ dead after 3 attempts \(HTTP 500\)/;
ok($t->wait_error_log($dead_re, 5), 'one warn for the dead delivery');

# 429 with Retry-After longer than the schedule

$id = $t->publish_ok('/limited', { message => 'later' });
@a = $limited->wait_requests(sub { @_ >= 2 }, 15);
is(scalar @a, 2, '429 is retried');
cmp_ok($a[1]{t} - $a[0]{t}, '>=', 1.9,
       'after Retry-After (2 s), not the 100ms of the schedule');
$ep = wait_endpoint($lp, sub { $_[0]{delivered} });
is($ep->{delivered}, 1, 'and delivered');

# 400: failed at once

$id = $t->publish_ok('/bad', { message => 'bad' });
$ep = wait_endpoint($xp, sub { $_[0]{failed} });
is($ep->{failed}, 1, '400: failed at once');
is($ep->{retried}, 0, 'not retried');
ok($t->wait_error_log(qr/\[warn\].*delivery \d+ failed for good after attempt 1 \(HTTP 400\)/, 5),
   'one warn');

# 3xx: no redirect is followed

$t->publish_ok('/redirect', { message => 'moved' });
$ep = wait_endpoint($t->port, sub { $_[0]{failed} });
is($ep->{lastStatus}, 302, 'a redirect is not followed: failed with 302');
unlike($t->access_log // '', qr{GET /elsewhere}, 'its Location is not asked');

# nothing listening: network errors are retried, then dead

$t->publish_ok('/refused', { message => 'nobody' });
$ep = wait_endpoint($t->port(2), sub { $_[0]{dead} });
is($ep->{dead}, 1, 'connection refused: retried, then dead');
like($ep->{lastError}, qr/connect/i, 'the error says so');

# a receiver that hangs: the attempt times out, the retry is delivered

$id = $t->publish_ok('/hang', { message => 'slow' });
$ep = wait_endpoint($hp, sub { $_[0]{delivered} }, 15);
is($ep->{delivered}, 1, 'a hanging receiver: timed out, then delivered');
@a = grep { $_->{id} eq $id } $hanging->requests;
is(scalar @a, 2, 'in 2 attempts');
cmp_ok($a[1]{t} - $a[0]{t}, '>=', 1.1,
       'the second after the timeout (1s) and the wait');
ok($t->wait_error_log(qr/attempt 1 failed \([^)]*timed out/i, 5),
   'the timeout is logged');

# 410 Gone disables the endpoint until reload

$t->publish_ok('/gone', { message => 'g1' });
$ep = wait_endpoint($gp, sub { $_[0]{failed} });
is($ep->{failed}, 1, '410: failed at once');
ok($ep->{disabled}, 'and the endpoint is disabled');

$t->publish_ok('/gone', { message => 'g2' });
$ep = wait_endpoint($gp, sub { $_[0]{failed} >= 2 });
is($ep->{failed}, 2, 'a later delivery fails without an attempt');
like($ep->{lastError}, qr/disabled/, 'saying the endpoint is disabled');
is(scalar($gone->requests), 1, 'the receiver was asked once');

# reload (with the real schedule still retrying)

$t->reload;

$t->publish_ok('/gone', { message => 'g3' });
my @g = $gone->wait_requests(sub { @_ >= 2 }, 10);
is(scalar @g, 2, 'after reload the endpoint is tried again');
$ep = wait_endpoint($gp, sub { $_[0]{failed} >= 3 });
is($ep->{failed}, 3, 'and fails again');

# the real schedule: attempts at 0, 4, 12, 22 s, across the reload

@a = grep { $_->{path} eq '/real' } $flaky->wait_requests(
    sub { grep({ $_->{path} eq '/real' } @_) >= 4 }, 40);
is(scalar @a, 4, 'the real schedule: 4 attempts');
is_deeply([ map { $_->{id} } @a ], [ ($real_id) x 4 ],
          'all with the same webhook-id');
my @at = map { $_->{t} - $a[0]{t} } @a;
my @want = (0, 4, 12, 22);
for my $i (1 .. 3) {
    cmp_ok($at[$i], '>=', $want[$i] - 0.05, "attempt $i+1 not before "
           . "$want[$i] s");
    cmp_ok($at[$i], '<', $want[$i] + 3, "attempt $i+1 near $want[$i] s");
}
$ep = wait_endpoint($fp, sub { $_[0]{delivered} >= 2 });
is($ep->{delivered}, 2, 'delivered once, after the reload');

finish();
