#!/usr/bin/perl

# webhook_stream_detach: plain HTTP/1.x streams drop their request once
# open (logged then), keep delivering over chunked and HTTP/1.0 framing,
# and stay attached when told to or when another module (limit_conn)
# keeps state in the request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:1m;

    log_format sse '$uri session=$webhook_session status=$status';
    limit_conn_zone $binary_remote_addr zone=perip:1m;

    server {
        listen 127.0.0.1:%%PORT%%;

        access_log %%PREFIX%%/logs/sse.log sse;

        location = /pub      { webhook_publish chat; }
        location = /stream   { webhook_stream chat; webhook_heartbeat 1s; }
        location = /attached { webhook_stream chat;
                               webhook_stream_detach off; }
        location = /limited  { webhook_stream chat; limit_conn perip 1;
                               limit_conn_status 429; }
    }
EOF

sub sse_log
{
    open my $fh, '<', $t->dir . '/logs/sse.log' or return '';
    local $/;
    return <$fh> // '';
}

sub active
{
    return $t->request('GET', '/pub')->{json}{activeConnections};
}

# a detached stream is logged while it is still open, with its session

my $s = $t->sse('/stream?sessionId=det');
$s->wait_events(1, 5);

ok(WebhookSSE::Test::wait_until(
       sub { sse_log() =~ m{^/stream session=det status=200$}m }, 5),
   'detached stream: logged while open, with $webhook_session');

is(active(), 1, 'detached stream: counted in activeConnections');

my $id = $t->publish_ok('/pub', { message => 'to det', sessionId => 'det' });
my @ev = $s->wait_for_event($id, 5);
is(scalar @ev, 1, 'detached stream: live event delivered');
is($ev[0]{json}{message}, 'to det', 'detached stream: event intact');
like($s->{headers}{'transfer-encoding'} // '', qr/chunked/,
     'detached stream: response is chunked');

ok(defined $s->wait_comment(3), 'detached stream: heartbeat arrives');

$id = $t->publish_ok('/pub', { message => 'after heartbeat',
                               sessionId => 'det' });
@ev = $s->wait_for_event($id, 5);
is(scalar @ev, 1, 'detached stream: chunk framing intact after heartbeat');

$s->abort;
ok(WebhookSSE::Test::wait_until(sub { active() == 0 }, 5),
   'detached stream: count drops when the client vanishes');

# HTTP/1.0: no chunks, the connection delimits the body

{
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!";
    print $c "GET /stream?sessionId=old HTTP/1.0\r\n\r\n";

    ok(WebhookSSE::Test::wait_until(sub { active() == 1 }, 5),
       'HTTP/1.0 stream: open');

    my $id10 = $t->publish_ok('/pub', { message => 'one-oh',
                                        sessionId => 'old' });

    my $got = '';
    my $sel = IO::Select->new($c);
    my $deadline = time + 5;

    while (time < $deadline && $got !~ /\Q$id10\E.*\n\n/s) {
        last unless $sel->can_read(0.5);
        last unless sysread($c, my $buf, 65536);
        $got .= $buf;
    }

    like($got, qr/^HTTP\/1\.1 200.*\r\n\r\nretry: 2000\n/s,
         'HTTP/1.0 stream: plain body after the header');
    like($got, qr/\nid: \Q$id10\E\ndata: \{[^\n]*"message":"one-oh"/,
         'HTTP/1.0 stream: event delivered unchunked');
    close $c;
}

# detach off: the request lives, and is logged when the stream ends

{
    ok(WebhookSSE::Test::wait_until(sub { active() == 0 }, 5),
       'no streams before the attached one');

    my $a = $t->sse('/attached?sessionId=att');
    $a->wait_events(1, 5);

    my $ida = $t->publish_ok('/pub', { message => 'att', sessionId => 'att' });
    is(scalar $a->wait_for_event($ida, 5), 1,
       'attached stream: live event delivered');
    unlike(sse_log(), qr{^/attached}m, 'attached stream: not logged while open');

    $a->close;
    ok(WebhookSSE::Test::wait_until(
           sub { sse_log() =~ m{^/attached session=att status=200$}m }, 5),
       'attached stream: logged when it ends');
}

# limit_conn keeps counting streams: they stay attached

{
    my $l1 = $t->sse('/limited?sessionId=lim');
    is($l1->status, 200, 'limit_conn: first stream admitted');
    $l1->wait_events(1, 5);

    my $l2 = $t->sse('/limited?sessionId=lim');
    is($l2->status, 429, 'limit_conn: second stream from the address '
                         . 'refused while the first is open');
    $l2->close;

    my $idl = $t->publish_ok('/pub', { message => 'lim', sessionId => 'lim' });
    is(scalar $l1->wait_for_event($idl, 5), 1,
       'limit_conn: the admitted stream still gets events');

    $l1->close;
    ok(WebhookSSE::Test::wait_until(sub { active() == 0 }, 5),
       'limit_conn: stream closed');

    my $l3 = $t->sse('/limited?sessionId=lim');
    is($l3->status, 200, 'limit_conn: a new stream admitted after the '
                         . 'first ended');
    $l3->close;
}

# a reload ends detached streams cleanly: retry hint, then the last chunk

{
    my $r = $t->sse('/stream?sessionId=rel');
    $r->wait_events(1, 5);

    $t->reload;

    ok($r->is_closed(5), 'reload: detached stream ended by the old worker');
    is_deeply($r->{retry}, [2000, 1000],
              'reload: a short retry before the end');
    like($r->body, qr/retry: 1000\n\n\z/, 'reload: body ends cleanly');
}

finish();
