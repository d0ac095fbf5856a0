#!/usr/bin/perl

# webhook_callbacks: a chat app registers a conversation's own callback URL
# at run time; every later message of that session is delivered there in
# the conversation format, signed with the registered secret.  Kept in the
# zone (survives reload), shown without the secret, removed on DELETE.
# Run-time URLs are https:// and public addresses only unless
# webhook_forward_allow says otherwise, checked on the address actually
# connected.  POST ?redrive= queues failed and dead deliveries again.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $secret = 'whsec_' . 'c2VjcmV0IGtleSBieXRlcyBmb3IgdGVzdHM=';

my $t = WebhookSSE::Test->new(http => '');
my $rcv = WebhookSSE::Receiver->start(python => $t->dir, secret => $secret);
my $flaky = WebhookSSE::Receiver->start(node => $t->dir,
                                        plan => '500,500,200');
my ($port, $fport) = ($rcv->port, $flaky->port);

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:1m;
    webhook_forward_rate off;
    webhook_forward_retry 100ms;

    server {
        listen 127.0.0.1:%%PORT%%;

        # loopback receivers are allowed here; plain http:// to them too
        location = /api/webhook {
            webhook_publish chat;
            webhook_forward_allow 127.0.0.1/32;
        }

        location = /api/webhook/callbacks {
            webhook_callbacks chat;
            webhook_secret "app-secret";
            webhook_forward_allow 127.0.0.1/32;
        }

        # the default: public addresses only, https:// only
        location = /guarded/webhook { webhook_publish chat; }
        location = /guarded/callbacks {
            webhook_callbacks chat;
            webhook_secret "app-secret";
        }

        location = /status { webhook_status chat; }
    }
CONF
$t->start;

sub call
{
    my ($method, $path, $data, %opt) = @_;
    my @h = ('X-Webhook-Secret' => $opt{secret} // 'app-secret');
    push @h, 'Content-Type' => 'application/json' if $data;
    return $t->request($method, $path, headers => \@h,
                       body => $data ? json_encode($data) : undef);
}

my $cb = '/api/webhook/callbacks';

my $r = call('PUT', $cb, { sessionId => 'conv-1',
                           callback_url => "http://127.0.0.1:$port/cb",
                           secret => $secret });
is($r->{status}, 200, 'PUT registers a callback');
is($r->{json}{callback_url}, "http://127.0.0.1:$port/cb", 'echoing the URL');
ok($r->{json}{signed}, 'signed');
ok($r->{body} !~ /\Q$secret\E|c2VjcmV0/, 'never the secret');

$r = call('GET', "$cb?sessionId=conv-1");
is($r->{status}, 200, 'GET shows it');
is($r->{json}{callback_url}, "http://127.0.0.1:$port/cb", 'its URL');
ok($r->{body} !~ /c2VjcmV0/, 'without the secret');

my $id = $t->publish_ok('/api/webhook', { message => 'to the CRM',
                                          sessionId => 'conv-1' });
$t->publish_ok('/api/webhook', { message => 'elsewhere',
                                 sessionId => 'conv-2' });

my @got = $rcv->wait_requests(sub { @_ >= 1 }, 15);
is(scalar @got, 1, 'the session\'s message is delivered to its callback');
is($got[0]{id}, $id, 'with its messageId as webhook-id');
ok($got[0]{verified}, 'signed with the registered secret');
is($got[0]{body}{conversation_id}, 'conv-1', 'in the conversation format');
is($got[0]{body}{data}{content}, 'to the CRM', 'with the message');

# replaced, survives reload

$r = call('POST', $cb, { sessionId => 'conv-1',
                         callback_url => "http://127.0.0.1:$port/v2" });
is($r->{status}, 200, 'POST replaces the registration');
ok(!$r->{json}{signed}, 'now unsigned');

$t->reload;

$id = $t->publish_ok('/api/webhook', { message => 'after reload',
                                       sessionId => 'conv-1' });
@got = grep { $_->{id} eq $id }
       $rcv->wait_requests(sub { grep { $_->{id} eq $id } @_ }, 15);
is($got[0]{path}, '/v2', 'the registration survives reload, replaced');
ok(!defined $got[0]{signature}, 'no signature without a secret');

# removed

$r = call('DELETE', "$cb?sessionId=conv-1");
is($r->{status}, 200, 'DELETE removes it');
is(call('GET', "$cb?sessionId=conv-1")->{status}, 404, 'then GET: 404');
is(call('DELETE', "$cb?sessionId=conv-1")->{status}, 404,
   'and DELETE again: 404');

my $before = () = $rcv->requests;
$id = $t->publish_ok('/api/webhook', { message => 'nobody',
                                       sessionId => 'conv-1' });
my $st = $t->request('GET', '/status')->{json};
my ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$port" }
           @{ $st->{outbound} };
is($ep->{queued} + $ep->{inflight}, 0, 'nothing is queued for it');

# errors

is(call('PUT', $cb, { sessionId => 's' }, secret => 'wrong')->{status}, 401,
   'the wrong secret: 401');
for my $case (
    [ { callback_url => 'https://x.example/' }, qr/sessionId is required/ ],
    [ { sessionId => 's' }, qr/callback_url is required/ ],
    [ { sessionId => 's', callback_url => 'ftp://x/' }, qr/https:/ ],
    [ { sessionId => 's', callback_url => 7 }, qr/must be a string/ ],
    [ { sessionId => 's', callback_url => 'https://x.example/',
        secret => 'whsec_!!' }, qr/secret/ ],
    [ { sessionId => "a\nb", callback_url => 'https://x.example/' },
      qr/sessionId/ ],
)
{
    $r = call('PUT', $cb, $case->[0]);
    is($r->{status}, 400, 'a bad registration: 400 (' . json_encode($case->[0])
                          . ')');
    like($r->{json}{error} // '', $case->[1], 'saying why');
}
is(call('GET', $cb)->{status}, 400, 'GET without sessionId: 400');
is(call('PATCH', $cb)->{status}, 405, 'other methods: 405');

# the SSRF guard: http:// only where the allow list names the address,
# loopback refused on the address connected, whatever the name

$r = call('PUT', '/guarded/callbacks',
          { sessionId => 'g', callback_url => "http://127.0.0.1:$port/" });
is($r->{status}, 400, 'default allow list: http:// refused');
like($r->{json}{error}, qr/https/, 'saying https:// is needed');

$r = call('PUT', '/guarded/callbacks',
          { sessionId => 'g', callback_url => "https://localhost:$port/" });
is($r->{status}, 200, 'an https:// URL is registered');

$t->publish_ok('/guarded/webhook', { message => 'ssrf', sessionId => 'g' });
wait_until(sub {
    $st = $t->request('GET', '/status')->{json};
    ($ep) = grep { $_->{endpoint} eq "https://localhost:$port" }
            @{ $st->{outbound} };
    $ep && $ep->{dead};
}, 15);
is($ep->{dead}, 1, 'its delivery to a loopback address is refused: dead');
like($ep->{lastError}, qr/address .* is not allowed by webhook_forward_allow/,
     "saying why ($ep->{lastError})");
is(scalar(() = $rcv->requests), $before, 'nothing reached the receiver');

# redrive

call('PUT', $cb, { sessionId => 'r', callback_url => "http://127.0.0.1:$fport/" });
$id = $t->publish_ok('/api/webhook', { message => 'again', sessionId => 'r' });
wait_until(sub {
    $st = $t->request('GET', '/status')->{json};
    ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$fport" }
            @{ $st->{outbound} };
    $ep && $ep->{dead};
}, 15);
is($ep->{kept}, 1, 'a dead delivery is kept');

$r = call('POST', "$cb?redrive=" . "http%3A%2F%2F127.0.0.1%3A$fport");
is($r->{json}{redriven}, 1, 'POST ?redrive=<endpoint> queues it again');
my @f = $flaky->wait_requests(sub { @_ >= 3 }, 15);
is(scalar @f, 3, 'a third attempt is made');
is($f[2]{id}, $id, 'of the same delivery');
wait_until(sub {
    $st = $t->request('GET', '/status')->{json};
    ($ep) = grep { $_->{endpoint} eq "http://127.0.0.1:$fport" }
            @{ $st->{outbound} };
    $ep && $ep->{delivered};
}, 15);
is($ep->{delivered}, 1, 'and delivered');
is($ep->{kept}, 0, 'no longer kept');
is(call('POST', "$cb?redrive=all")->{json}{redriven}, 1,
   'redrive=all: the refused one too');

# registrations take at most a quarter of the zone (1m here)

my ($stored, $full) = (0);
my $long = 'https://hooks.example.com/' . ('x' x 1900);
for my $i (1 .. 400) {
    $r = call('PUT', $cb, { sessionId => "many-$i", callback_url => $long });
    if ($r->{status} != 200) {
        $full = $r;
        last;
    }
    $stored++;
}
is($full && $full->{status}, 503, 'registrations past a quarter of the zone: '
   . "503 (after $stored)");
like($full && $full->{json}{error}, qr/cannot store the callback/,
     'saying why');
cmp_ok($stored, '>=', 100, 'about 256k of registrations fit');
is(call('GET', "$cb?sessionId=many-1")->{status}, 200,
   'the earlier ones are kept');
is(call('DELETE', "$cb?sessionId=many-1")->{status}, 200, 'one removed,');
is(call('PUT', $cb, { sessionId => 'many-new', callback_url => $long })
   ->{status}, 200, 'another fits');

finish();
