#!/usr/bin/perl

# conf/request-id.conf, run as it is: status updates keyed by request_id
# are POSTed to /api/webhooks/chatgpt/ as passthrough payloads and reach
# the stream /api/sse/<request_id>/ of that request only; a page that
# reconnects with Last-Event-ID (or ?lastEventId=) gets exactly what it
# missed, one that connects late gets the whole request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $SECRET = 'rid-secret';
my $PUB = '/api/webhooks/chatgpt/';

my $t = WebhookSSE::Test->example('request-id.conf',
                                  env => { WEBHOOK_SECRET => $SECRET })
        ->start;

sub update
{
    my ($data) = @_;
    return $t->publish($PUB, $data, secret => $SECRET);
}

# the answer is the workers' {"received":true,"request_id":..}: the message
# id is in the access log (id=$webhook_message_id), one line per publish
my $published = 0;

sub logged_id
{
    my $n = ++$published;
    my @ids;
    wait_until(sub {
        @ids = $t->access_log =~ m{"POST /\S+ HTTP/1\.1" 200 id=(\S+)}g;
        return @ids >= $n;
    }, 5);
    return $ids[$n - 1];
}

sub update_ok
{
    my ($data) = @_;
    my $r = $t->publish($PUB, $data, secret => $SECRET);
    die "update failed: $r->{status} $r->{body}\n" unless $r->{status} == 200;
    return logged_id();
}

# ----- the flow ---------------------------------------------------------------

my $s = $t->sse('/api/sse/req-1/');
is($s->status, 200, 'stream /api/sse/req-1/ opens');
my ($c) = $s->wait_events(1, 5);
is($c && $c->{data}, '{"type":"connected","request_id":"req-1"}',
   'connected event names the request_id from the path');

my $other = $t->sse('/api/sse/req-2/');
$other->wait_events(1, 5);

my $r = update({ request_id => 'req-1', status => 'processing' });
is($r->{status}, 200, 'a status update without a message text is accepted');
is($r->{body}, qq({"received":true,"request_id":"req-1"}\n),
   'the answer is the workers\' {"received":true,"request_id":..}');
is($r->{headers}{'content-type'}, 'application/json', 'answered as JSON');
my $id1 = logged_id();

my $id_other = update_ok({ request_id => 'req-2', status => 'processing' });

my $response = {
    model   => 'gpt-4o-mini',
    choices => [ { index => 0, message => {
        role    => 'assistant',
        content => "Line 1\nLine 2 \x{201c}quoted\x{201d} </script>" } } ],
    usage   => { prompt_tokens => 12, completion_tokens => 34 },
};
my $id2 = update_ok({ request_id => 'req-1', status => 'done',
                      response => $response });

my @ev = $s->wait_events(2, 5);
is(scalar @ev, 2, 'req-1 stream: both updates arrive');
is($ev[0]{id}, $id1, 'req-1 stream: processing first');
is_deeply($ev[0]{json}, { type => 'webhook_message', messageId => $id1,
                          timestamp => $ev[0]{json}{timestamp},
                          request_id => 'req-1', status => 'processing' },
          'req-1 stream: the update as posted, plus type, id and time');
is($ev[1]{id}, $id2, 'req-1 stream: then done (and nothing of req-2)');
is($ev[1]{json}{status}, 'done', 'req-1 stream: status done');
is_deeply($ev[1]{json}{response}, $response,
          'req-1 stream: the response object intact (nesting, newlines, '
          . 'unicode, markup)');

my ($o) = $other->wait_events(1, 5);
is($o && $o->{id}, $id_other, 'req-2 stream: only its own update');
is($other->pending_events, 0, 'req-2 stream: none of req-1\'s');

# ----- reconnect: Last-Event-ID -----------------------------------------------

$s->close;

my $id3 = update_ok({ request_id => 'req-1', status => 'followup',
                      response => { text => 'one more' } });
my $id4 = update_ok({ request_id => 'req-1', status => 'closed' });

my $re = $t->sse('/api/sse/req-1/', headers => { 'Last-Event-ID' => $id1 });
is($re->status, 200, 'reconnect with Last-Event-ID: 200');
@ev = $re->wait_events(4, 5);
is_deeply([ map { $_->{id} } @ev[1 .. $#ev] ], [ $id2, $id3, $id4 ],
          'reconnect: every update after the last one seen, in order, '
          . 'none twice');
is($ev[3] && $ev[3]{json}{status}, 'closed', 'reconnect: the latest update');

my $id5 = update_ok({ request_id => 'req-1', status => 'live again' });
my ($live) = $re->wait_events(1, 5);
is($live && $live->{id}, $id5, 'reconnect: live updates continue after the '
                               . 'replay');

my $q = $t->sse("/api/sse/req-1/?lastEventId=$id4");
@ev = $q->wait_events(2, 5);
is($ev[1] && $ev[1]{id}, $id5, 'reconnect with ?lastEventId=: resumes too');
is($q->pending_events, 0, 'reconnect with ?lastEventId=: nothing more');

# ----- a page that connects after the answer ----------------------------------

my @late = map { update_ok({ request_id => 'req-3', status => $_ }) }
           qw(queued processing done);

my $l = $t->sse('/api/sse/req-3/');
@ev = $l->wait_events(4, 5);
is_deeply([ map { $_->{json}{status} } @ev[1 .. $#ev] ],
          [ qw(queued processing done) ],
          'late stream: the whole request is replayed');
is_deeply([ map { $_->{id} } @ev[1 .. $#ev] ], \@late,
          'late stream: with the ids the worker got');

# ----- refused updates --------------------------------------------------------

$r = $t->publish($PUB, { request_id => 'req-1', status => 'x' });
is($r->{status}, 401, 'update without the secret: 401');

$r = update({ request_id => 42, status => 'done' });
is($r->{status}, 400, 'a numeric request_id: 400');
is($r->{json} && $r->{json}{error}, 'field "request_id" must be a string',
   'a numeric request_id: the error names the field');

$r = update('{"request_id":"req-1","status":');
is($r->{status}, 400, 'truncated JSON: 400');

$r = update('["req-1"]');
is($r->{status}, 400, 'an array: 400');

$r = $t->request('GET', '/api/sse/req-1');
is($r->{status}, 404, 'the stream path ends with a slash');

$r = $t->request('GET', '/api/sse/a/b/');
is($r->{status}, 404, 'one path segment only');

my $marker = update_ok({ request_id => 'req-1', status => 'marker' });
($live) = $re->wait_events(1, 5);
is($live && $live->{id}, $marker, 'refused updates reached no stream');

like($t->access_log,
     qr/"POST \Q$PUB\E HTTP\/1\.1" 200 id=\Q$id2\E request="req-1"/,
     'access log: message id and request id');

finish();
