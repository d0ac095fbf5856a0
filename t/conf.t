#!/usr/bin/perl

# The example configurations in conf/ work as documented: each is started
# as it is, with only its paths moved into a private prefix and its port
# changed, and exercised the way its comments say.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $ROOT = "$FindBin::Bin/..";

# conf/X.conf with its repository-relative paths and port replaced
sub example
{
    my ($name, %opt) = @_;

    open my $fh, '<', "$ROOT/conf/$name" or die "conf/$name: $!";
    local $/;
    my $text = <$fh>;
    close $fh;

    my $module = $WebhookSSE::Test::MODULE;
    my $user = $> == 0 ? "user root;\n" : '';

    $text =~ s{^load_module \S+;}{${user}load_module $module;}m
        or die "conf/$name: no load_module\n";
    $text =~ s{^(\s*)error_log [^;]+;}{${1}error_log %%PREFIX%%/logs/error.log info;}m;
    $text =~ s{^(\s*)pid [^;]+;}{${1}pid %%PREFIX%%/logs/nginx.pid;}m;
    $text =~ s{\brun/tmp/(\w+)}{%%PREFIX%%/tmp/$1}g;
    $text =~ s{\brun/access\.log}{%%PREFIX%%/logs/access.log}g;
    $text =~ s{\broot conf/html;}{root $ROOT/conf/html;}g;
    $text =~ s{listen 127\.0\.0\.1:8080}{listen 127.0.0.1:%%PORT%%}g;

    return WebhookSSE::Test->new(conf => $text, %opt);
}

# ----- conf/nginx.conf: what make run serves ----------------------------------

{
    my $t = example('nginx.conf')->start;

    my $r = $t->request('GET', '/api/webhook');
    is_deeply($r->{json}, { status => 'ok', activeConnections => 0 },
              'nginx.conf: health check');

    $r = $t->request('GET', '/');
    is($r->{status}, 200, 'nginx.conf: demo page served');
    like($r->{body}, qr/EventSource|<script/i, 'nginx.conf: demo page is '
                                               . 'the chat window');

    my $s = $t->sse('/api/webhook/stream?sessionId=abc123');
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{data}, '{"type":"connected","sessionId":"abc123"}',
       'nginx.conf: the README\'s stream opens');

    $r = $t->publish('/api/webhook', { message => 'Hello' });
    is($r->{status}, 401, 'nginx.conf: publishing needs the demo secret');

    $r = $t->publish('/api/webhook', { message => 'Hello',
                                       sessionId => 'abc123' },
                     secret => 'change-me');
    is($r->{status}, 200, 'nginx.conf: the README\'s publish is accepted');

    my @ev = $s->wait_for_event($r->{json}{messageId}, 5);
    is(@ev && $ev[-1]{json}{message}, 'Hello',
       'nginx.conf: the stream gets it');

    $r = $t->request('GET', '/webhook-status');
    is($r->{json} && $r->{json}{published}, 1,
       'nginx.conf: /webhook-status reports the publish');

    $s->close;
    $t->stop;
}

# ----- conf/limits.conf: limit_req on publishes, limit_conn on streams --------

{
    my $t = example('limits.conf', env => { WEBHOOK_SECRET => 'lim-secret' })
            ->start;

    my $r = $t->publish('/api/webhook', { message => 'one' },
                        secret => 'lim-secret');
    is($r->{status}, 200, 'limits.conf: secret from the environment');

    # 200 publishes at once: the burst of 100 passes, the rest is refused
    my @status = map { $_->{status} }
                 $t->publish_pipelined('/api/webhook',
                                       [ map { { message => "m$_" } }
                                             1 .. 200 ],
                                       secret => 'lim-secret');
    my $ok = grep { $_ == 200 } @status;
    my $refused = grep { $_ == 429 } @status;
    ok($ok >= 100 && $ok < 200 && $ok + $refused == 200,
       "limits.conf: a burst past limit_req is refused with 429 "
       . "($ok accepted, $refused refused)");

    $r = $t->request('POST', '/api/webhook',
                     headers => { 'Content-Type' => 'application/json',
                                  'X-Webhook-Secret' => 'lim-secret' },
                     body => '{"message":"' . ('x' x 70000) . '"}');
    ok($r->{status} == 413 || $r->{status} == 429,
       'limits.conf: a body over 64k is refused');

    my @streams = map { $t->sse('/api/webhook/stream?sessionId=lim') } 1 .. 20;
    is(scalar(grep { $_->status == 200 } @streams), 20,
       'limits.conf: 20 streams from one address admitted');

    my $extra = $t->sse('/api/webhook/stream?sessionId=lim');
    is($extra->status, 429, 'limits.conf: the 21st stream is refused');
    is($extra->json && $extra->json->{success}, 0,
       'limits.conf: refused as JSON');

    $_->close for @streams, $extra;
    $t->stop;
}

finish();
