#!/usr/bin/perl

# Secrets stay out of the logs: with webhook_secret as text, env= and
# file=, webhook_verify and webhook_stream_token keys, the error log at
# info level and an access log with the module's variables, publishes with
# right, wrong, missing and near-miss secrets, oversize, invalid and
# refused bodies leave neither a configured secret nor a wrong candidate
# in either log; the module's log lines never echo a request body.  Error
# answers do not echo the candidate either, and a configuration refused
# for a bad secret file does not print the file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(hmac_sha256_hex);
use Test::More;
use WebhookSSE::Test;

# distinctive values, each found nowhere else
my %SECRET = (
    text   => 'Txt-s3cret-7f3a9c41',
    env    => 'Env-s3cret-b81d44e0',
    file   => 'File-s3cret-c92e01aa',
    github => 'Gh-s3cret-5d7e19b2',
    token  => 'Tok-s3cret-0a6f83cd',
);

my @WRONG = (
    'Wrong-cand-1-zz81q',
    'Txt-s3cret-7f3a9c4',                   # the text secret minus one
    'Txt-s3cret-7f3a9c42',                  # one character off
    'Env-s3cret-b81d44e0 Wrong-cand-2',     # the env secret plus more
    'File-s3cret-c92e01aX',
);

my @MARKERS;    # strings only ever sent in request bodies

sub marker
{
    my ($what) = @_;
    my $m = "BODY-MARKER-$what-" . int(rand 1e9);
    push @MARKERS, $m;
    return $m;
}

my $t = WebhookSSE::Test->new(
    env  => { WEBHOOK_SSE_LOGTEST_SECRET => $SECRET{env} },
    http => <<"EOF");
    webhook_zone zone=chat:1m;

    log_format withvars '\$remote_addr "\$request" \$status \$request_length '
                        'id=\$webhook_message_id session="\$webhook_session"';

    map \$arg_empty \$empty_secret { default ""; }

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%PREFIX%%/logs/vars.log withvars;

        client_max_body_size 2k;
        client_body_buffer_size 1k;

        location = /text  { webhook_publish chat;
                            webhook_secret "$SECRET{text}"; }
        location = /env   { webhook_publish chat;
                            webhook_secret env=WEBHOOK_SSE_LOGTEST_SECRET; }
        location = /file  { webhook_publish chat;
                            webhook_secret file=%%PREFIX%%/secret.txt; }
        location = /empty { webhook_publish chat;
                            webhook_secret \$empty_secret; }
        location = /github { webhook_publish chat;
                             webhook_verify github "$SECRET{github}"; }

        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /private {
            webhook_stream chat;
            webhook_stream_token "$SECRET{token}";
        }
    }
EOF

{
    open my $fh, '>', $t->dir . '/secret.txt' or die $!;
    print $fh "$SECRET{file}\n";
    close $fh;
}

$t->start;

my $s = $t->sse('/stream?sessionId=logs');
$s->wait_events(1, 5);

my @answers;    # every response body

sub post
{
    my ($path, $body, %opt) = @_;
    my $r = $t->request('POST', $path, headers => [
        'Content-Type' => $opt{content_type} // 'application/json',
        defined $opt{secret} ? ('X-Webhook-Secret' => $opt{secret}) : (),
        @{ $opt{headers} // [] },
    ], body => $body);
    push @answers, $r->{body};
    return $r;
}

sub body { json_encode({ message => marker($_[0]), sessionId => 'logs',
                         %{ $_[1] // {} } }) }

# right secrets: accepted, and delivered
for my $loc (qw(text env file)) {
    my $r = post("/$loc", body("ok-$loc"), secret => $SECRET{$loc});
    is($r->{status}, 200, "$loc secret: right one accepted");
}

# wrong, missing, near-miss, and another location's secret
my $n401 = 0;
for my $loc (qw(text env file)) {
    for my $cand (@WRONG, (map { $SECRET{$_} } grep { $_ ne $loc }
                           qw(text env file))) {
        $n401++ if post("/$loc", body("wrong-$loc"),
                        secret => $cand)->{status} == 401;
    }
    $n401++ if post("/$loc", body("missing-$loc"))->{status} == 401;
}
is($n401, 3 * (@WRONG + 3), 'every wrong or missing secret: 401');

# right secret, bad requests of every kind
{
    my $sec = $SECRET{text};
    my %want = (
        'oversize (413)'       => [ 413, body('oversize', { pad => 'x' x 4000 }) ],
        'invalid JSON (400)'   => [ 400, '{"message":"' . marker('badjson') . '",' ],
        'not an object (400)'  => [ 400, '["' . marker('array') . '"]' ],
        'no message (400)'     => [ 400, json_encode({ text => marker('nomsg') }) ],
        'bad session (400)'    => [ 400, json_encode({ message => marker('sess'),
                                                       sessionId => "a\x01b" }) ],
        'the secret as body (400)' => [ 400, '{"message":' . $SECRET{text} ],
    );
    for my $name (sort keys %want) {
        my ($status, $b) = @{ $want{$name} };
        is(post('/text', $b, secret => $sec)->{status}, $status,
           "right secret, $name");
    }

    is(post('/text', body('ctype'), secret => $sec,
            content_type => 'text/plain')->{status}, 415,
       'right secret, text/plain (415)');

    # a body large enough to be buffered to a temporary file, chunked
    my $big = body('chunked', { pad => 'y' x 1500 });
    my $r = $t->request('POST', '/text', headers => [
        'Content-Type' => 'application/json',
        'X-Webhook-Secret' => $sec,
        'Transfer-Encoding' => 'chunked',
    ], body => sprintf("%x\r\n%s\r\n0\r\n\r\n", length $big, $big));
    is($r->{status}, 200, 'right secret, chunked body through a temp file');

    # wrong secret with a body nginx must not even read
    is(post('/text', body('unread', { pad => 'z' x 1500 }),
            secret => $WRONG[0])->{status}, 401, 'wrong secret, large body');
}

# a secret made of variables that evaluates to nothing: refused, logged
is(post('/empty', body('empty'), secret => 'x')->{status}, 500,
   'empty variable secret: 500');

# webhook_verify github: right and wrong signatures
{
    my $b = body('github');
    my $sig = 'sha256=' . hmac_sha256_hex($b, $SECRET{github});
    is(post('/github', $b, headers => [ 'X-Hub-Signature-256' => $sig ])
       ->{status}, 200, 'github signature: right one accepted');

    my $bad = 'sha256=' . hmac_sha256_hex($b, $WRONG[0]);
    is(post('/github', body('github-bad'),
            headers => [ 'X-Hub-Signature-256' => $bad ])->{status}, 401,
       'github signature: wrong key refused');
    is(post('/github', body('github-none'))->{status}, 401,
       'github signature: missing refused');
}

# webhook_stream_token: right, wrong key, other session
{
    my $exp = time + 600;
    my $good = "$exp." . hmac_sha256_hex("$exp.tok", $SECRET{token});
    my $bad = "$exp." . hmac_sha256_hex("$exp.tok", $WRONG[0]);

    my $ok = $t->sse("/private?sessionId=tok&token=$good");
    is($ok->{status}, 200, 'stream token: right one opens the stream');
    $ok->close;

    # (a client that puts a secret itself into the URL has it in the
    # request line of both logs: not sent here)
    for my $token ($bad, "$exp.not-hex", 'garbage') {
        my $r = $t->request('GET', "/private?sessionId=tok&token=$token");
        push @answers, $r->{body};
        is($r->{status}, 403, 'stream token: a wrong one is refused')
            or diag $r->{body};
    }
}

# the control: something the log does hold, found by the same search
my $CONTROL = 'CONTROL-in-the-uri-' . int(rand 1e9);
post("/text?$CONTROL", body('control'), secret => $WRONG[0]);

$s->close;
$t->stop;

my $error_log = $t->error_log;
my $access_log = $t->access_log;
my $vars_log = do {
    open my $fh, '<', $t->dir . '/logs/vars.log' or die "vars.log: $!";
    local $/;
    <$fh>;
};

ok(index($error_log, $CONTROL) >= 0,
   'control: the error log holds the request line of a refused publish');
like($error_log, qr/\[info\].*webhook publish with a wrong X-Webhook-Secret/,
     'control: the module logged the refusals at info');
like($error_log, qr/\[error\].*webhook_secret evaluated to an empty string/,
     'control: the empty secret logged as an error');
like($vars_log, qr/ 200 \d+ id=\d+-\d+ session="logs"/,
     'control: the access log has the module\'s variables');

sub absent
{
    my ($log, $name, @strings) = @_;
    my @found = grep { index($log, $_) >= 0 } @strings;
    ok(!@found, "$name holds none of " . scalar(@strings) . ' strings')
        or diag "found: @found";
}

my @secrets = values %SECRET;

absent($error_log, 'error log (info): secrets', @secrets);
absent($error_log, 'error log (info): wrong candidates', @WRONG);
absent($error_log, 'error log (info): request bodies', @MARKERS);
absent($access_log . $vars_log, 'access logs: secrets and candidates',
       @secrets, @WRONG);
absent($access_log . $vars_log, 'access logs: request bodies', @MARKERS);
absent(join("\n", @answers), 'error answers: secrets and candidates',
       @secrets, @WRONG);

# a secret file nginx refuses (too large): the error names the file only
{
    my $bad = WebhookSSE::Test->new(expect_log => [ qr/\[emerg\]/ ],
                                    http => <<'EOF');
    webhook_zone zone=chat:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /p { webhook_publish chat;
                        webhook_secret file=%%PREFIX%%/big.txt; }
    }
EOF
    open my $fh, '>', $bad->dir . '/big.txt' or die $!;
    print $fh "$SECRET{file}\n" x 400;
    close $fh;

    my ($ok, $out) = $bad->test_config;
    ok(!$ok, 'a secret file over 4096 bytes is refused');
    like($out, qr/big\.txt/, 'the error names the file');
    absent($out . $bad->error_log, 'nginx -t output and log: the file\'s '
                                   . 'content', $SECRET{file});
}

finish();
