#!/usr/bin/perl

# A session from the query string ($arg_...): decoded as a form decodes it
# (%XX a byte, '+' a space); a malformed escape or invalid UTF-8 is a 400
# that says so, never a silently different session.  $webhook_session
# names the session before the handler runs (an auth_request subrequest).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m;

    log_format sess '$uri $status "$webhook_session"';

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub { webhook_publish chat; }
        location = /to {
            webhook_publish chat;
            webhook_session $arg_to;
        }
        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            auth_request /check;
        }
        location = /check {
            internal;
            log_subrequest on;
            access_log %%PREFIX%%/logs/check.log sess;
            return 204;
        }
    }
EOF

for my $bad (['abc%2', 'malformed percent-escape'],
             ['abc%zz', 'malformed percent-escape'],
             ['abc%', 'malformed percent-escape'],
             ['abc%FF', 'invalid UTF-8'],
             ['%C3%28', 'invalid UTF-8'])
{
    my ($q, $why) = @$bad;
    my $r = $t->request('GET', "/stream?sessionId=$q");
    is($r->{status}, 400, "stream ?sessionId=$q: 400");
    is($r->{headers}{'content-type'}, 'application/json',
       "stream ?sessionId=$q: a JSON error");
    like($r->{json}{error} // '', qr/\Q$why\E/,
         "stream ?sessionId=$q: the error says $why");

    $r = $t->publish("/to?to=$q", { message => 'x' });
    is($r->{status}, 400, "publish ?to=$q: 400");
    like($r->{json}{error} // '', qr/\Q$why\E/,
         "publish ?to=$q: the error says $why");
}

{
    # '+' is a space, as in forms (URLSearchParams writes one so)
    my $s = $t->sse('/stream?sessionId=a+b%2Bc');
    my ($c) = $s->wait_events(1, 5);
    is($c && $c->{json} && $c->{json}{sessionId}, 'a b+c',
       "stream ?sessionId=a+b%2Bc is session 'a b+c'");
    my $id = $t->publish_ok('/to?to=a+b%2Bc', { message => 'plus' });
    my @ev = $s->wait_for_event($id, 5);
    is(scalar @ev, 1, "publish ?to=a+b%2Bc reaches session 'a b+c'");
    my $id2 = $t->publish_ok('/pub', { message => 'body',
                                      sessionId => 'a b+c' });
    is(scalar($s->wait_for_event($id2, 5)), 1,
       "a body's sessionId 'a b+c' reaches it too");
    $s->close;

    my $u = $t->sse('/stream?sessionId=caf%C3%A9');
    my ($cu) = $u->wait_events(1, 5);
    is($cu && $cu->{json} && $cu->{json}{sessionId}, "caf\x{e9}",
       'percent-encoded UTF-8 is decoded');
    $u->close;
}

{
    # the auth subrequest sees the session the stream will use
    my $s = $t->sse('/stream?SESSIONID=first&sessionId=second');
    $s->wait_events(1, 5);
    $s->close;
    my $line;
    wait_until(sub {
        open my $fh, '<', $t->dir . '/logs/check.log' or return 0;
        ($line) = grep { /"(first|second)"/ } <$fh>;
        return defined $line;
    }, 5);
    chomp $line if defined $line;
    like($line // '', qr/^\/check 204 "first"$/,
         '$webhook_session in the auth_request subrequest is the session '
         . 'nginx streams (first match, any case)');
}

finish();
