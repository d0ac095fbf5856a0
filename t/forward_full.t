#!/usr/bin/perl

# A zone full of queued deliveries: deliveries waiting may take half the
# zone; past that a publish to a location with webhook_forward is refused
# with 503 (the publisher retries later) rather than accepted with its
# delivery dropped.  What was accepted stays queued in the zone, across a
# reload, and is delivered once the endpoint lets it through.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use WebhookSSE::Test;

my $conf = <<'CONF';
    webhook_zone zone=chat:256k history=20;
    log_format rcv '$http_webhook_id';

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:%%PORT2%%/in;
            webhook_forward_rate %%RATE%%;
        }

        location = /status { webhook_status chat; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log %%PREFIX%%/logs/received.log rcv;
        location / { return 204; }
    }
CONF

(my $slow = $conf) =~ s/%%RATE%%/1r\/m/;
(my $open = $conf) =~ s/%%RATE%%/off/;

my $t = WebhookSSE::Test->new(http => $slow)->start;

my (@accepted, $refused);
my $text = 'x' x 1000;

for my $i (1 .. 400) {
    my $r = $t->publish('/pub', { message => "$i $text", sessionId => 's' });
    if ($r->{status} == 200) {
        push @accepted, $r->{json}{messageId};
        next;
    }
    $refused = $r;
    last;
}

ok($refused, 'with the endpoint held back (1r/m), a publish is refused '
   . 'once deliveries fill half the zone');
is($refused && $refused->{status}, 503, 'with 503');
is($refused && $refused->{json}{error},
   'the outbound delivery queue is full', 'and a JSON error saying why');
cmp_ok(scalar @accepted, '>', 20, scalar(@accepted) . ' accepted before');
ok($t->wait_error_log(qr/\[warn\].*deliveries waiting take \d+ bytes, half the zone: publish refused/, 5),
   'the refusal is logged');

my $st = $t->request('GET', '/status')->{json};
is($st->{outbound}[0]{queued} + $st->{outbound}[0]{delivered},
   scalar @accepted, 'every accepted message is queued or delivered');
is($st->{outbound}[0]{dropped}, 0, 'none dropped');

# the queue survives a reload; the endpoint opened, all are delivered

$t->set_config(http => $open);
$t->reload;

my @got;
wait_until(sub {
    open my $fh, '<', $t->dir . '/logs/received.log' or return 0;
    chomp(@got = <$fh>);
    @got >= @accepted;
}, 20);

is_deeply([ sort @got ], [ sort @accepted ],
          'after a reload every accepted message is delivered, once');

my $r = $t->publish('/pub', { message => 'again', sessionId => 's' });
is($r->{status}, 200, 'then publishes are accepted again');

finish();
