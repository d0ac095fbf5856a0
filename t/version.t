#!/usr/bin/perl

# The version comes from one place, VERSION: nginx logs it at start and on
# reload (notice), webhook_status reports it in JSON and Prometheus text.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

open my $fh, '<', "$FindBin::Bin/../VERSION" or die "VERSION: $!";
chomp(my $version = <$fh>);
close $fh;

like($version, qr/^[0-9][0-9A-Za-z.+~-]*$/, "VERSION: $version");

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /status { webhook_status chat; }
    }
EOF

my $notice = qr{\[notice\] \d+#\d+: webhook-sse/\Q$version\E }
             . qr{\(built for nginx/[0-9.]+\)$};

ok($t->wait_error_log($notice, 5), 'error_log: version notice at start');

my $st = $t->request('GET', '/status')->{json};
is($st && $st->{version}, $version, 'status JSON: version');

my $r = $t->request('GET', '/status?format=prometheus');
like($r->{body},
     qr/^webhook_build_info\{version="\Q$version\E"\} 1$/m,
     'status prometheus: webhook_build_info');

sub notices { scalar grep { $_ =~ $notice } split /\n/, $t->error_log }

my $before = notices();
$t->reload;
ok(WebhookSSE::Test::wait_until(sub { notices() > $before }, 10),
   'error_log: version notice again on reload');

finish();
