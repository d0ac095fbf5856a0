#!/usr/bin/perl

# webhook_status: the zone's figures as JSON and in the Prometheus text
# format, exact for what the test did (channels, retained messages,
# streams, published and delivered totals, evictions).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m history=3;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

sub status { $t->request('GET', '/status')->{json} }

my $st = status();
is($st->{zone}, 'chat', 'status: zone name');
is($st->{size}, 1024 * 1024, 'status: zone size');
ok($st->{free} > 0 && $st->{free} <= $st->{size}
   && $st->{used} == $st->{size} - $st->{free}, 'status: used + free = size');
is_deeply([ @$st{qw(channels retained streams published delivered)} ],
          [ 0, 0, 0, 0, 0 ], 'status: an empty zone');
ok(WebhookSSE::Test::wait_until(sub { status()->{workers} == 2 }, 5),
   'status: both workers have joined the zone');

# two streams on s1, one on s2; 5 messages to s1, 1 to s2, 1 broadcast
my @s1 = map { $t->sse('/stream?sessionId=s1') } 1 .. 2;
my $s2 = $t->sse('/stream?sessionId=s2');
$_->wait_events(1, 5) for @s1, $s2;

my @ids = map { $t->publish_ok('/pub', { message => "m$_", sessionId => 's1' }) }
          1 .. 5;
push @ids, $t->publish_ok('/pub', { message => 'x', sessionId => 's2' });
push @ids, $t->publish_ok('/pub', { message => 'all' });

$_->wait_for_event($ids[-1], 5) for @s1, $s2;

$st = status();
is($st->{channels}, 2, 'status: two session channels');
is($st->{retained}, 3 + 1 + 1, 'status: retained within history=3');
is($st->{streams}, 3, 'status: three streams');
is($st->{published}, 7, 'status: seven published');
is($st->{delivered}, 2 * 5 + 1 + 3, 'status: every delivery counted');
is($st->{lastSeq}, 7, 'status: last sequence number');

my $r = $t->request('GET', '/status?format=prometheus');
like($r->{headers}{'content-type'}, qr{^text/plain}, 'prometheus: text');
like($r->{body}, qr/^webhook_streams\{zone="chat"\} 3$/m,
     'prometheus: streams gauge');
like($r->{body}, qr/^webhook_delivered_total\{zone="chat"\} 14$/m,
     'prometheus: delivered counter');
like($r->{body}, qr/^# TYPE webhook_published_total counter$/m,
     'prometheus: typed');

$r = $t->request('POST', '/status');
is($r->{status}, 405, 'status: POST refused');
is($r->{json} && $r->{json}{success}, 0, 'status: refusal is JSON');
is($r->{headers}{allow}, 'GET, HEAD', 'status: the 405 carries Allow');

$r = $t->request('GET', '/status?format=xml');
is($r->{status}, 400, 'status: an unknown format= is 400');
like($r->{json} && $r->{json}{error}, qr/format=json or format=prometheus/,
     'status: the 400 names the formats');
is($t->request('GET', '/status?format=json')->{json}{zone}, 'chat',
   'status: format=json');

# ----- a plain scrape: content negotiation ------------------------------------

my $PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0,'
    . 'application/openmetrics-text;version=0.0.1;q=0.75,'
    . 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

for my $accept ([$PROMETHEUS_ACCEPT, 'text', 'Prometheus\'s scrape'],
                ['text/plain', 'text', 'text/plain'],
                ['application/openmetrics-text', 'text', 'OpenMetrics'],
                ['*/*', 'json', 'curl (*/*)'],
                ['application/json, text/plain', 'json', 'JSON and text'],
                [undef, 'json', 'no Accept'])
{
    my ($value, $want, $what) = @$accept;
    my $x = $t->request('GET', '/status',
                        headers => defined $value ? { Accept => $value } : {});
    if ($want eq 'text') {
        like($x->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
             "status: $what gets the text format");
    } else {
        is($x->{headers}{'content-type'}, 'application/json',
           "status: $what gets JSON");
    }
    is($x->{headers}{vary}, 'Accept', "status: $what: Vary: Accept");
}

# every JSON figure in the text format, each with HELP and TYPE
{
    my $json = status();
    my $text = $t->request('GET', '/status',
                           headers => { Accept => $PROMETHEUS_ACCEPT })->{body};
    my %map = (size => 'webhook_zone_size_bytes',
               used => 'webhook_zone_used_bytes',
               free => 'webhook_zone_free_bytes',
               channels => 'webhook_channels',
               retained => 'webhook_retained_messages',
               streams => 'webhook_streams',
               workers => 'webhook_workers',
               published => 'webhook_published_total',
               delivered => 'webhook_delivered_total',
               evicted => 'webhook_evicted_total',
               expired => 'webhook_expired_total',
               idempotencyKeys => 'webhook_idempotency_keys',
               duplicates => 'webhook_duplicates_total',
               epoch => 'webhook_zone_epoch',
               lastSeq => 'webhook_last_sequence');
    my @missing = grep { $_ ne 'zone' && $_ ne 'version' && !$map{$_} }
                  sort keys %$json;
    is("@missing", '', 'status: every JSON figure has a metric');
    like($text, qr/^# HELP webhook_build_info \S.*\n# TYPE webhook_build_info gauge\nwebhook_build_info\{version="\Q$json->{version}\E"\} 1$/m,
         'prometheus: the JSON version is webhook_build_info\'s label');
    for my $k (sort keys %map) {
        my $m = $map{$k};
        like($text, qr/^# HELP $m \S.*\n# TYPE $m (gauge|counter)\n\Q$m\E\{zone="chat"\} \Q$json->{$k}\E$/m,
             "prometheus: $m has HELP, TYPE and the JSON's $k");
    }

    SKIP: {
        my $promtool = -x '/usr/bin/promtool' ? '/usr/bin/promtool' : undef;
        ok($promtool, 'promtool is installed (make test installs '
                      . 'prometheus)') or skip 'no promtool', 2;
        my $file = $t->dir . '/logs/metrics.txt';
        open my $fh, '>', $file or die $!;
        print $fh $text;
        close $fh;
        my $out = `$promtool check metrics < $file 2>&1`;
        is($?, 0, 'promtool check metrics: exit 0') or diag $out;
        is($out, '', 'promtool check metrics: no complaint') or diag $out;
    }
}

$_->close for @s1, $s2;

ok(WebhookSSE::Test::wait_until(sub { status()->{streams} == 0 }, 5),
   'status: streams back to 0');

finish();
