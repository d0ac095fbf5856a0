#!/usr/bin/perl

# $webhook_message_id and $webhook_session: in an access log format (for
# publishes and for streams), in add_header, and harmless where no webhook
# handler ran.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m;

    log_format wh 'U=$uri A=$arg_tag S=$status '
                  'ID="$webhook_message_id" SESS="$webhook_session"';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%PREFIX%%/logs/wh.log wh;

        location = /pub { webhook_publish chat; }

        location ~ ^/api/sse/([^/]+)/$ {
            webhook_publish chat;
            webhook_session $1;
        }

        location = /stream {
            webhook_stream chat;
            webhook_replay 0;
            add_header X-Session "[$webhook_session]" always;
        }

        location = /plain {
            return 200 "id=[$webhook_message_id] s=[$webhook_session]";
        }
    }
EOF

sub log_line
{
    my ($tag) = @_;
    my $path = $t->dir . '/logs/wh.log';
    my $found;
    wait_until(sub {
        open my $fh, '<', $path or return 0;
        while (<$fh>) {
            chomp;
            if (/ A=\Q$tag\E /) { $found = $_; return 1 }
        }
        return 0;
    }, 5);
    return $found;
}

my $EMPTY = qr/(?:|-)/;

{
    my $id = $t->publish_ok('/pub?tag=p1', { message => 'm',
                                             sessionId => 'v1' });
    my $l = log_line('p1');
    ok($l, 'publish: access log line written');
    like($l // '', qr/ ID="\Q$id\E" /,
         'publish: $webhook_message_id is the new message id');
    like($l // '', qr/ SESS="v1"$/,
         'publish: $webhook_session is the target session');
}

{
    my $id = $t->publish_ok('/pub?tag=p2', { message => 'to all' });
    my $l = log_line('p2');
    like($l // '', qr/ ID="\Q$id\E" /, 'broadcast: message id logged');
    like($l // '', qr/ SESS="$EMPTY"$/, 'broadcast: $webhook_session empty');
}

{
    my $r = $t->publish('/pub?tag=p3', { sessionId => 'v3' });
    is($r->{status}, 400, 'rejected publish: 400');
    my $l = log_line('p3');
    like($l // '', qr/ S=400 ID="$EMPTY" /,
         'rejected publish: no message id logged');
}

{
    my $id = $t->publish_ok('/api/sse/pathsess/?tag=p4',
                            { message => 'routed', sessionId => 'other' });
    my $l = log_line('p4');
    like($l // '', qr/ ID="\Q$id\E" SESS="pathsess"$/,
         'webhook_session $1 on publish: $webhook_session is the routed '
         . 'session');
}

{
    my $s = $t->sse('/stream?sessionId=v5&tag=s1');
    is($s->{headers}{'x-session'}, '[v5]',
       'stream: $webhook_session usable in add_header');
    $s->wait_events(1, 5);
    $s->close;
    my $l = log_line('s1');
    ok($l, 'stream: access log line written when the client leaves');
    like($l // '', qr/ S=200 ID="$EMPTY" SESS="v5"$/,
         'stream: $webhook_session logged for the stream');
}

{
    my $s = $t->sse('/stream?tag=s2');
    is($s->{headers}{'x-session'}, '[]',
       'stream without session: $webhook_session empty in add_header');
    $s->wait_events(1, 5);
    $s->abort;
    my $l = log_line('s2');
    like($l // '', qr/ SESS="$EMPTY"$/,
         'stream without session (aborted): logged with empty session');
}

{
    my $r = $t->request('GET', '/plain?tag=x1');
    is($r->{status}, 200, 'variables outside webhook locations: 200');
    is($r->{body}, 'id=[] s=[]', 'variables outside webhook locations: '
                                 . 'empty');
}

finish();
