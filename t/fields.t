#!/usr/bin/perl

# webhook_session_field, webhook_message_field and webhook_session on a
# publish location: custom and dotted field names, passthrough payloads
# (message field off), session routed from the URI overriding the body.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub { webhook_publish chat; }

        location = /pub/custom {
            webhook_publish chat;
            webhook_session_field conversation_id;
            webhook_message_field text;
        }

        location = /pub/dotted {
            webhook_publish chat;
            webhook_session_field data.conversation_id;
        }

        location = /pub/passthrough {
            webhook_publish chat;
            webhook_session_field request_id;
            webhook_message_field off;
        }

        location = /pub/nosession {
            webhook_publish chat;
            webhook_session_field off;
        }

        location ~ ^/api/sse/([^/]+)/$ {
            webhook_publish chat;
            webhook_session $1;
        }

        location = /stream { webhook_stream chat; webhook_replay 0; }

        location = /stream/conv {
            webhook_stream chat;
            webhook_replay 0;
            webhook_session $arg_conversation;
            webhook_session_field conversation_id;
        }
    }
EOF

my %s;
for my $name (qw(c1 d1 r1 n1 routed other)) {
    $s{$name} = $t->sse("/stream?sessionId=$name");
}
$s{none} = $t->sse('/stream');
$s{conv} = $t->sse('/stream/conv?conversation=c1');

for my $k (sort keys %s) {
    my ($c) = $s{$k}->wait_events(1, 5);
    die "$k: no connected event\n" unless $c;
    $s{$k}{connected} = $c;
}

is($s{conv}{connected}{data}, '{"type":"connected","conversation_id":"c1"}',
   'stream: webhook_session $arg_conversation with '
   . 'webhook_session_field conversation_id');

# publish, then a broadcast marker; returns { stream name => [events] }
# holding what each stream got before the marker
sub deliver
{
    my ($path, $body) = @_;
    my $r = $t->publish($path, $body);
    my $mark = $t->publish_ok('/pub', { message => 'marker' });
    my %got;
    for my $k (sort keys %s) {
        my @ev = $s{$k}->wait_for_event($mark, 5);
        die "$k: marker not received\n" unless @ev;
        pop @ev;
        $got{$k} = \@ev;
    }
    return ($r, \%got);
}

sub receivers
{
    my ($got) = @_;
    return join ',', sort grep { @{ $got->{$_} } } keys %$got;
}

{
    my ($r, $got) = deliver('/pub/custom', { text => 'hi',
                                              conversation_id => 'c1' });
    is($r->{status}, 200, 'custom fields: accepted');
    is(receivers($got), 'c1,conv', 'custom fields: delivered to session c1 '
                                   . 'only');
    my $j = $got->{c1}[0] && $got->{c1}[0]{json};
    is($j && $j->{text}, 'hi', 'custom fields: text kept');
    is($j && $j->{conversation_id}, 'c1', 'custom fields: session field '
                                          . 'kept');

    ($r) = deliver('/pub/custom', { message => 'hi',
                                    conversation_id => 'c1' });
    is($r->{status}, 400, 'custom message field: body without "text" is '
                          . '400');

    ($r) = deliver('/pub/custom', { text => 'hi', conversation_id => 7 });
    is($r->{status}, 400, 'custom session field: non-string is 400');
}

{
    my ($r, $got) = deliver('/pub/dotted',
                            { message => 'deep',
                              data => { conversation_id => 'd1', x => 1 } });
    is($r->{status}, 200, 'dotted session field: accepted');
    is(receivers($got), 'd1', 'dotted session field: delivered to d1 only');
    my $j = $got->{d1}[0] && $got->{d1}[0]{json};
    is_deeply($j && $j->{data}, { conversation_id => 'd1', x => 1 },
              'dotted session field: nested object kept');

    ($r, $got) = deliver('/pub/dotted', { message => 'no data' });
    is($r->{status}, 200, 'dotted session field absent: accepted');
    is(receivers($got), join(',', sort keys %s),
       'dotted session field absent: a broadcast to every stream');

    ($r) = deliver('/pub/dotted', { message => 'bad',
                                    data => { conversation_id => [1] } });
    is($r->{status}, 400, 'dotted session field: non-string is 400');
}

{
    my ($r, $got) = deliver('/pub/passthrough',
                            { request_id => 'r1', status => 'done',
                              response => { text => 'ok', n => [1, 2] } });
    is($r->{status}, 200, 'message field off: passthrough payload accepted');
    is(receivers($got), 'r1', 'message field off: routed by request_id');
    my $j = $got->{r1}[0] && $got->{r1}[0]{json};
    is($j && $j->{status}, 'done', 'message field off: fields kept');
    is_deeply($j && $j->{response}, { text => 'ok', n => [1, 2] },
              'message field off: nested response kept');
    ok($j && !exists $j->{message}, 'message field off: no message added');

    ($r) = deliver('/pub/passthrough', {});
    is($r->{status}, 200, 'message field off: empty object accepted');

    ($r) = deliver('/pub/passthrough', '[1]');
    is($r->{status}, 400, 'message field off: still must be an object');
}

{
    my ($r, $got) = deliver('/pub/nosession', { message => 'x',
                                                sessionId => 'n1' });
    is($r->{status}, 200, 'session field off: accepted');
    is(receivers($got), join(',', sort keys %s),
       'session field off: body sessionId ignored, a broadcast');
}

{
    my ($r, $got) = deliver('/api/sse/routed/', { message => 'via path' });
    is($r->{status}, 200, 'webhook_session $1 on publish: accepted');
    is(receivers($got), 'routed', 'webhook_session $1: delivered to the '
                                  . 'routed session only');
    my $j = $got->{routed}[0] && $got->{routed}[0]{json};
    is($j && $j->{sessionId}, 'routed',
       'webhook_session $1: event carries "sessionId":"routed" although '
       . 'the body had none');

    ($r, $got) = deliver('/api/sse/routed/', { message => 'override',
                                               sessionId => 'other' });
    is(receivers($got), 'routed', 'webhook_session $1 overrides the body '
                                  . 'field: not delivered to "other"');
    $j = $got->{routed}[0] && $got->{routed}[0]{json};
    is($j && $j->{sessionId}, 'routed',
       'webhook_session $1 overrides the body field in the event');
}

$_->close for values %s;

finish();
