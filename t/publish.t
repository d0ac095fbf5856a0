#!/usr/bin/perl

# POST /api/webhook: the success answer, every kind of bad input with its
# status and JSON error, and that no rejected input is stored or disturbs
# the zone.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:4m history=100;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /api/webhook {
            webhook_publish chat;
        }

        location = /small {
            client_max_body_size 64;
            webhook_publish chat;
        }

        location = /filebody {
            client_body_buffer_size 1k;
            webhook_publish chat;
        }

        location = /secure {
            webhook_publish chat;
            webhook_secret "s3cret";
        }

        location = /api/webhook/stream {
            webhook_stream chat;
            webhook_replay 100;
        }
    }
EOF

my $PUB = '/api/webhook';
my @good;             # accepted ids the session "good" stream gets, in order
my @all;              # every accepted id, in order
my $epoch;


# ----- success --------------------------------------------------------------

{
    my $before = int(time * 1000);
    my $r = $t->publish($PUB, { message => 'first', sessionId => 'good' });
    my $after = int(time * 1000) + 1;

    is($r->{status}, 200, 'publish: 200');
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         'publish: Content-Type application/json');

    my $j = $r->{json};
    ok($j && ref $j eq 'HASH', 'publish: body is a JSON object')
        or diag $r->{body};
    ok($j && JSON::PP::is_bool($j->{success}) && $j->{success},
       'publish: "success":true (a JSON boolean)');

    like($r->{body}, qr/"messageId":"\d+-\d+"/,
         'publish: messageId is a JSON string "<epoch>-<seq>"');
    like($r->{body}, qr/"timestamp":\d+[,}]/,
         'publish: timestamp is a JSON number');

    my ($e, $seq) = id_parts($j->{messageId});
    is($seq, 1, 'publish: the first message of a new zone has seq 1');
    ok($e && $e <= $after && $e > $before - 60_000,
       'publish: id epoch is the zone creation time in ms')
        or diag "epoch $e, now $before";
    ok($j->{timestamp} >= $before && $j->{timestamp} <= $after,
       'publish: timestamp is the current unix time in ms')
        or diag "timestamp $j->{timestamp}, window $before..$after";

    is_deeply([sort keys %$j], [qw(messageId success timestamp)],
              'publish: answer has exactly success, messageId, timestamp');

    $epoch = $e;
    push @good, $j->{messageId};
    push @all, $j->{messageId};

    my $r2 = $t->publish($PUB, { message => 'second' });
    my ($e2, $seq2) = id_parts($r2->{json}{messageId});
    is($r2->{status}, 200, 'publish: broadcast (no sessionId) accepted');
    is("$e2-$seq2", "$epoch-2", 'publish: next message gets seq + 1, same '
                                . 'epoch');
    push @good, $r2->{json}{messageId};
    push @all, $r2->{json}{messageId};

    my $r3 = $t->publish($PUB, '{"message":"charset","sessionId":"good"}',
                         content_type => 'application/json; charset=utf-8');
    is($r3->{status}, 200,
       'publish: Content-Type application/json; charset=utf-8 accepted');
    push @good, $r3->{json}{messageId} if $r3->{status} == 200;
    push @all, $r3->{json}{messageId} if $r3->{status} == 200;

    my $r4 = $t->publish($PUB, { message => 'rich', sessionId => 'good',
                                 content_type => 'card',
                                 content_attributes => { items => [1, 2],
                                                         x => { y => 1 } },
                                 n => 1.5, t => JSON::PP::true(),
                                 z => undef });
    is($r4->{status}, 200, 'publish: extra fields of any JSON type accepted');
    push @good, $r4->{json}{messageId} if $r4->{status} == 200;
    push @all, $r4->{json}{messageId} if $r4->{status} == 200;

    my $s256 = 'q' x 256;
    my $r5 = $t->publish($PUB, { message => 'long session',
                                 sessionId => $s256 });
    is($r5->{status}, 200, 'publish: sessionId of exactly 256 bytes '
                           . 'accepted');
    push @all, $r5->{json}{messageId} if $r5->{status} == 200;

    my $deep = '1';
    $deep = "[$deep]" for 1 .. 50;
    my $r6 = $t->publish($PUB, qq({"message":"deep50","sessionId":"good",)
                               . qq("d":$deep}));
    is($r6->{status}, 200, 'publish: nesting 51 levels deep accepted '
                           . '(limit is 64)');
    push @good, $r6->{json}{messageId} if $r6->{status} == 200;
    push @all, $r6->{json}{messageId} if $r6->{status} == 200;
}


# ----- health check ---------------------------------------------------------

{
    my $r = $t->request('GET', $PUB);
    is($r->{status}, 200, 'GET on publish location: 200');
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         'GET on publish location: JSON');
    is_deeply($r->{json}, { status => 'ok', activeConnections => 0 },
              'GET on publish location: {"status":"ok",'
              . '"activeConnections":0}') or diag $r->{body};
    like($r->{body}, qr/"activeConnections":0[,}]/,
         'GET: activeConnections is a JSON number');

    my $h = $t->request('HEAD', $PUB);
    is($h->{status}, 200, 'HEAD on publish location: 200');
    is($h->{body}, '', 'HEAD on publish location: no body');
}


# ----- bad input ------------------------------------------------------------

my $n_bad = 0;

# bad(name, expected status, body, %publish options)
sub bad
{
    my ($name, $status, $body, %opt) = @_;
    my $path = delete $opt{path} // $PUB;

    my $r = $t->publish($path, $body, %opt);

    is($r->{status}, $status, "$name: $status");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$name: error is JSON");
    my $j = $r->{json};
    ok($j && ref $j eq 'HASH' && JSON::PP::is_bool($j->{success})
       && !$j->{success} && defined $j->{error} && !ref $j->{error}
       && length $j->{error},
       "$name: body {\"success\":false,\"error\":\"...\"}")
        or diag $r->{body};
    ok(!exists $j->{messageId}, "$name: no messageId") if $j;

    # the zone keeps working and the rejection used no message id
    my $g = $t->publish($PUB, { message => "good after $name",
                                sessionId => 'good' });
    is($g->{status}, 200, "$name: the next good publish succeeds");
    my (undef, $seq) = id_parts($g->{json}{messageId});
    my (undef, $last) = id_parts($all[-1]);
    is($seq, $last + 1, "$name: rejected input used no message id");
    push @good, $g->{json}{messageId};
    push @all, $g->{json}{messageId};
    $n_bad++;
}

my $deep = '1';
$deep = "[$deep]" for 1 .. 10000;
my $deep_obj = '{"message":"x"}';
$deep_obj = qq({"message":"m","a":$deep_obj}) for 1 .. 100;
my $deep65 = '1';
$deep65 = "[$deep65]" for 1 .. 70;

bad('not JSON', 400, 'hello world');
bad('empty body', 400, '');
bad('truncated JSON', 400, '{"message":"hi","sessionId":"good"');
bad('trailing garbage after the object', 400,
    '{"message":"hi","sessionId":"good"} x');
bad('two objects', 400, '{"message":"a"}{"message":"b"}');
bad('JSON array', 400, '[{"message":"hi"}]');
bad('JSON string', 400, '"message"');
bad('JSON number', 400, '42');
bad('JSON null', 400, 'null');
bad('10000-deep array nesting', 400,
    qq({"message":"deep","sessionId":"good","a":$deep}));
bad('100-deep object nesting', 400, $deep_obj);
bad('71-deep nesting (over 64)', 400,
    qq({"message":"deep","sessionId":"good","a":$deep65}));
bad('invalid UTF-8 (0xff)', 400, qq({"message":"bad \xff here"}));
bad('invalid UTF-8 (truncated sequence)', 400,
    qq({"message":"bad \xe2\x82","sessionId":"good"}));
bad('invalid UTF-8 (overlong encoding)', 400,
    qq({"message":"bad \xc0\xaf","sessionId":"good"}));
bad('invalid UTF-8 (surrogate encoded)', 400,
    qq({"message":"bad \xed\xa0\x80","sessionId":"good"}));
bad('raw NUL byte inside a string', 400,
    qq({"message":"a\0b","sessionId":"good"}));
bad('NUL byte outside strings', 400, qq({"message":"ab"\0}));
bad('raw newline inside a string', 400,
    qq({"message":"a\nb","sessionId":"good"}));
bad('single quotes', 400, q({'message':'hi'}));
bad('message missing', 400, { sessionId => 'good', text => 'hi' });
bad('message a number', 400, { message => 5, sessionId => 'good' });
bad('message null', 400, '{"message":null,"sessionId":"good"}');
bad('message empty', 400, { message => '', sessionId => 'good' });
bad('message an object', 400, { message => { a => 1 },
                                 sessionId => 'good' });
bad('message an array', 400, { message => ['hi'], sessionId => 'good' });
bad('message false', 400, '{"message":false}');
bad('sessionId a number', 400, '{"message":"hi","sessionId":5}');
bad('sessionId an object', 400, '{"message":"hi","sessionId":{"a":"b"}}');
bad('sessionId over 256 bytes', 400, { message => 'hi',
                                       sessionId => 'q' x 257 });
bad('sessionId with a newline', 400, { message => 'hi',
                                       sessionId => "go\nod" });
bad('sessionId with a NUL (escaped)', 400,
    '{"message":"hi","sessionId":"go\u0000od"}');
bad('sessionId with a control char (escaped \u0001)', 400,
    '{"message":"hi","sessionId":"a\u0001"}');
bad('sessionId with a tab', 400, '{"message":"hi","sessionId":"a\tb"}');
bad('body over client_max_body_size', 413,
    { message => 'x' x 200, sessionId => 'good' }, path => '/small');
bad('Content-Type text/plain', 415, { message => 'hi', sessionId => 'good' },
    content_type => 'text/plain');
bad('Content-Type form', 415, { message => 'hi', sessionId => 'good' },
    content_type => 'application/x-www-form-urlencoded');
bad('Content-Type application/jsonx', 415,
    { message => 'hi', sessionId => 'good' },
    content_type => 'application/jsonx');
bad('Content-Type application/json-seq', 415,
    { message => 'hi', sessionId => 'good' },
    content_type => 'application/json-seq');
bad('Content-Type application/json, a letter short', 415,
    { message => 'hi', sessionId => 'good' },
    content_type => 'application/jso');
bad('secret missing', 401, { message => 'hi', sessionId => 'good' },
    path => '/secure');
bad('secret wrong', 401, { message => 'hi', sessionId => 'good' },
    path => '/secure', secret => 's3creT');
bad('secret a prefix of the right one', 401,
    { message => 'hi', sessionId => 'good' },
    path => '/secure', secret => 's3cre');
bad('secret longer than the right one', 401,
    { message => 'hi', sessionId => 'good' },
    path => '/secure', secret => 's3cret!');

{
    # no Content-Type header at all
    my $r = $t->request('POST', $PUB,
                        body => '{"message":"hi","sessionId":"good"}');
    is($r->{status}, 415, 'no Content-Type: 415');
    ok($r->{json} && !$r->{json}{success}, 'no Content-Type: JSON error');
}

{
    my $r = $t->publish('/secure', { message => 'secret ok',
                                     sessionId => 'good' },
                        secret => 's3cret');
    is($r->{status}, 200, 'right secret: 200');
    push @good, $r->{json}{messageId} if $r->{status} == 200;
    push @all, $r->{json}{messageId} if $r->{status} == 200;
}

# other spellings of JSON than the usual one
for my $ct ('Application/JSON', 'application/json;charset=utf-8',
            'application/json ; charset=utf-8', 'application/cloudevents+json')
{
    my $r = $t->publish($PUB, { message => "as $ct", sessionId => 'good' },
                        content_type => $ct);
    is($r->{status}, 200, "Content-Type $ct accepted");
    push @good, $r->{json}{messageId} if $r->{status} == 200;
    push @all, $r->{json}{messageId} if $r->{status} == 200;
}

for my $m (qw(PUT DELETE PATCH OPTIONS)) {
    my $r = $t->request($m, $PUB,
                        headers => { 'Content-Type' => 'application/json' },
                        body => '{"message":"hi","sessionId":"good"}');
    is($r->{status}, 405, "$m on publish location: 405");
    like($r->{headers}{allow} // '', qr/\bPOST\b/,
         "$m on publish location: Allow names POST");
    ok($r->{json} && ref $r->{json} eq 'HASH' && !$r->{json}{success},
       "$m on publish location: JSON error") or diag $r->{body};
}


# ----- bodies that arrive in other shapes ------------------------------------

my %text_of;      # id -> expected message text for ids checked below

sub accepted
{
    my ($r, $name, $text) = @_;
    is($r->{status}, 200, $name) or diag $r->{body};
    return unless $r->{status} == 200 && $r->{json};
    push @good, $r->{json}{messageId};
    push @all, $r->{json}{messageId};
    $text_of{ $r->{json}{messageId} } = $text;
}

{
    my $body = '{"message":"chunked body","sessionId":"good"}';
    my $chunked = join '', map { sprintf("%x\r\n%s\r\n", length, $_) }
                  substr($body, 0, 10), substr($body, 10, 20),
                  substr($body, 30);
    $chunked .= "0\r\n\r\n";
    my $r = $t->request('POST', $PUB,
                        headers => [ 'Content-Type' => 'application/json',
                                     'Transfer-Encoding' => 'chunked' ],
                        body => $chunked);
    accepted($r, 'chunked request body: 200', 'chunked body');

    my $big = json_encode({ message => 'x' x 200, sessionId => 'good' });
    $r = $t->request('POST', '/small',
                     headers => [ 'Content-Type' => 'application/json',
                                  'Transfer-Encoding' => 'chunked' ],
                     body => sprintf("%x\r\n%s\r\n0\r\n\r\n",
                                     length $big, $big));
    is($r->{status}, 413, 'chunked body over client_max_body_size: 413');

    # the answer must not be a message id
    my (undef, $seq) = id_parts($t->publish_ok($PUB, {
        message => 'after chunked 413', sessionId => 'good' }));
    my (undef, $last) = id_parts($all[-1]);
    is($seq, $last + 1, 'chunked 413 used no message id');
    push @good, "$epoch-$seq";
    push @all, "$epoch-$seq";
}

{
    my $text = 'expect ' . ('e' x 3000);
    my $r = $t->request('POST', $PUB,
                        headers => [ 'Content-Type' => 'application/json',
                                     'Expect' => '100-continue' ],
                        body => json_encode({ message => $text,
                                              sessionId => 'good' }));
    accepted($r, 'Expect: 100-continue: 200', $text);
}

{
    # the body arrives in two parts, the second 300 ms later
    my $text = 'slow body';
    my $body = json_encode({ message => $text, sessionId => 'good' });
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!";
    print $s "POST $PUB HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\nContent-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n"
             . substr($body, 0, 12);
    $s->flush;
    my $early = IO::Select->new($s)->can_read(0.3);
    ok(!$early, 'slow body: no answer before the body is complete');
    print $s substr($body, 12);
    $s->flush;
    my $data = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(5)) {
        last unless sysread $s, $data, 65536, length $data;
    }
    close $s;
    my ($status) = $data =~ m{^HTTP/1\.1 (\d+)};
    my ($json) = $data =~ /\r\n\r\n(.*)\z/s;
    accepted({ status => $status // 0, body => $data,
               json => json_decode($json) },
             'body arriving in two parts: 200', $text);
}

{
    # larger than client_body_buffer_size: nginx keeps it in a temp file
    my $text = 'from a file ' . join '', map { chr(65 + $_ % 26) } 1 .. 20000;
    my $r = $t->publish('/filebody', { message => $text,
                                       sessionId => 'good' });
    accepted($r, 'body written to a temp file: 200', $text);
}

{
    # one keep-alive connection, several publishes one after another
    my @res = $t->publish_pipelined($PUB, [
        map { { message => "keepalive $_", sessionId => 'good' } } 1 .. 3 ]);
    accepted($res[$_ - 1], "keep-alive publish $_: 200", "keepalive $_")
        for 1 .. 3;
}


# ----- nothing rejected was stored ------------------------------------------

{
    my $rp = $t->stream_replay('/api/webhook/stream?sessionId=good', $PUB,
                               { message => 'marker',
                                 sessionId => 'good' });

    my @got = map { $_->{id} // '' } @{ $rp->{replay} };
    is_deeply(\@got, \@good,
              'fresh stream replays exactly the accepted messages, in '
              . 'order (' . scalar(@good) . ')')
        or diag explain { got => \@got, want => \@good };

    my %got_text = map { ($_->{id} // '') => $_->{json}{message} }
                   @{ $rp->{replay} };
    my @wrong = grep { ($got_text{$_} // '') ne $text_of{$_} }
                sort keys %text_of;
    ok(!@wrong, 'bodies sent chunked, slowly, via a temp file arrive '
                . 'intact') or diag "wrong: @wrong";

    my @texts = map { $_->{json}{message} // '' } @{ $rp->{replay} };
    ok(!grep({ $_ eq 'hi' || /^(bad|deep|a)\b/ } @texts),
       'no rejected message text appears in the replay');

    my @seqs = map { (id_parts($_))[1] } @all;
    is_deeply(\@seqs, [1 .. @all],
              'accepted messages have consecutive seqs 1..N')
        or diag "seqs: @seqs";

    $rp->{stream}->close;
}

finish();
