#!/usr/bin/perl

# History (webhook_history): the retained messages of a session and the
# broadcasts, as the same event objects a stream gets, oldest first, in
# pages of "limit" with a "next" cursor (after=<messageId>); the history
# bound holds; large messages page one by one; streams' token rules
# (webhook_stream_token) guard it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256_hex);
use Test::More;
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(workers => 2, http => <<'EOF');
    webhook_zone zone=chat:4m history=20;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;

        client_max_body_size 1m;

        location = /pub     { webhook_publish chat; }
        location = /stream  { webhook_stream chat; webhook_replay 100; }
        location = /history { webhook_history chat; }

        location = /secure/history {
            webhook_history chat;
            webhook_stream_token "token-secret";
        }
    }
EOF
$t->start;

sub history
{
    my ($query) = @_;
    my $r = $t->request('GET', "/history?$query");
    die "history?$query: $r->{status} $r->{body}\n"
        unless $r->{status} == 200 && $r->{json};
    return $r->{json};
}

# every page from "after" on, following "next"
sub all_pages
{
    my ($query, $limit) = @_;
    my (@events, $after, $pages);
    while (1) {
        my $q = "$query&limit=$limit" . (defined $after ? "&after=$after" : '');
        my $h = history($q);
        push @events, @{ $h->{events} };
        $pages++;
        last unless defined $h->{next};
        die "next is not the last event's id\n"
            unless $h->{next} eq $h->{events}[-1]{messageId};
        $after = $h->{next};
        die "too many pages\n" if $pages > 100;
    }
    return (\@events, $pages);
}

my @ids;
for my $i (1 .. 12) {
    my %m = (message => "m$i", n => $i, rich => { list => [ 1, "two" ] });
    $m{sessionId} = ($i % 4 == 0) ? undef : ($i % 3 == 0) ? 'other' : 's';
    delete $m{sessionId} unless defined $m{sessionId};
    push @ids, [ $t->publish_ok('/pub', \%m), $m{sessionId} ];
}

my @want = map { $_->[0] } grep { !defined $_->[1] || $_->[1] eq 's' } @ids;

# what a stream replays of the session: the reference

my $s = $t->sse('/stream?sessionId=s');
my @ev = $s->wait_events(1 + @want, 5);
shift @ev;
is_deeply([ map { $_->{id} } @ev ], \@want,
          'the stream replays the session\'s messages and the broadcasts');

my $h = history('sessionId=s');
is_deeply($h->{events}, [ map { $_->{json} } @ev ],
          'history answers the same event objects as the stream, in order');
is($h->{next}, undef, 'next is null when nothing more is retained');

my ($pages_events, $pages) = all_pages('sessionId=s', 3);
is_deeply([ map { $_->{messageId} } @$pages_events ], \@want,
          'pages of 3 following next give every event once, in order');
is($pages, int((@want + 2) / 3), "in " . int((@want + 2) / 3) . " pages");

$h = history("sessionId=s&after=$want[2]");
is_deeply([ map { $_->{messageId} } @{ $h->{events} } ], [ @want[3 .. $#want] ],
          'after=<id> starts after that message');

$h = history("sessionId=s&after=$want[-1]");
is_deeply($h->{events}, [], 'after the newest: nothing');
is($h->{next}, undef, 'and next is null');

$h = history('sessionId=s&after=1-1');
is(scalar @{ $h->{events} }, scalar @want,
   'an id of another zone (epoch) gives everything retained');

$h = history('sessionId=nobody');
is_deeply([ map { $_->{messageId} } @{ $h->{events} } ],
          [ map { $_->[0] } grep { !defined $_->[1] } @ids ],
          'a session without messages has the broadcasts');

# the history bound

my @u = map { $t->publish_ok('/pub', { message => "u$_", sessionId => 'u' }) }
        1 .. 25;
my ($u_events) = all_pages('sessionId=u', 7);
is_deeply([ map { $_->{messageId} } grep { ($_->{sessionId} // '') eq 'u' }
            @$u_events ],
          [ @u[5 .. 24] ], 'history keeps the newest 20 of a session');

# messages larger than a page's buffer come one by one

my $big = 'x' x (200 * 1024);
my @big = map { $t->publish_ok('/pub', { message => "$big$_",
                                          sessionId => 'big' }) } 1 .. 3;
my ($big_events, $big_pages) = all_pages('sessionId=big', 100);
is_deeply([ map { $_->{messageId} } grep { ($_->{sessionId} // '') eq 'big' }
            @$big_events ],
          \@big, 'large messages all come, in order');
ok($big_pages >= 3, "in pages of one or two ($big_pages pages)");
is(length($big_events->[-1]{message}), 200 * 1024 + 1, 'whole');

# bad requests

for my $q ('sessionId=s&limit=0', 'sessionId=s&limit=1001',
           'sessionId=s&limit=x', "sessionId=%01")
{
    my $r = $t->request('GET', "/history?$q");
    is($r->{status}, 400, "$q: 400");
    is($r->{json} && $r->{json}{success}, 0, "$q: a JSON error");
}

my $r = $t->request('POST', '/history?sessionId=s', body => '{}',
                    headers => { 'Content-Type' => 'application/json' });
is($r->{status}, 405, 'POST: 405');
like($r->{headers}{allow} // '', qr/GET/, 'Allow: GET');

# stream tokens

$r = $t->request('GET', '/secure/history?sessionId=s');
is($r->{status}, 403, 'with webhook_stream_token, no token: 403');
is($r->{json} && $r->{json}{success}, 0, 'a JSON error');

my $expires = time + 600;
my $token = "$expires." . hmac_sha256_hex("$expires.s", 'token-secret');

$r = $t->request('GET', "/secure/history?sessionId=s&token=$token");
is($r->{status}, 200, 'the session\'s token opens its history');
is(scalar @{ $r->{json}{events} }, scalar @want, 'all of it');

$r = $t->request('GET', "/secure/history?sessionId=other&token=$token");
is($r->{status}, 403, 'another session\'s token does not');

$r = $t->request('GET', '/secure/history?sessionId=s',
                 headers => { Authorization => "Bearer $token" });
is($r->{status}, 200, 'so does it as a bearer token');

$t->stop;

finish();
