#!/usr/bin/perl

# webhook_zone ... persist=PATH: the zone's retained messages, epoch and
# last id are saved when nginx stops and loaded when it starts again: a
# stream with a Last-Event-ID from before the restart gets exactly what it
# missed, and ids go on where they were.  A truncated, damaged or foreign
# file is ignored with one error line; nginx starts with an empty zone.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $http = <<'EOF';
    webhook_zone zone=chat:1m history=100 persist=%%PREFIX%%/chat.zone;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
        location = /status { webhook_status chat; }
    }
EOF

my $t = WebhookSSE::Test->new(http => $http)->start;
my $file = $t->dir . '/chat.zone';

sub ids { map { $_->{id} } @_ }

sub status { $t->request('GET', '/status')->{json} }

my @ids = map {
    $t->publish_ok('/pub', { message => "m$_", sessionId => 's1',
                             extra => { n => $_ } })
} 1 .. 5;
my $bc = $t->publish_ok('/pub', { message => 'to all' });
my $other = $t->publish_ok('/pub', { message => 'x', sessionId => 's2' });

my $before = status();

$t->stop;

ok(-f $file, 'stop: the zone is saved');
ok(!-e "$file.tmp", 'no temporary file left');
like($t->error_log, qr/7 messages saved to/, 'stop: logged');

$t->start;

like($t->error_log, qr/7 messages loaded from/, 'start: loaded');

my $after = status();
is($after->{epoch}, $before->{epoch}, 'the epoch is kept');
is($after->{lastSeq}, $before->{lastSeq}, 'the last id is kept');
is($after->{retained}, 7, 'the messages are back');

my $s = $t->sse('/stream?sessionId=s1',
                headers => { 'Last-Event-ID' => $ids[1] });
my @ev = $s->wait_events(5, 10);

is($ev[0]{json}{type}, 'connected', 'resume after the restart');
is_deeply([ids(@ev[1 .. 4])], [@ids[2 .. 4], $bc],
          'exactly the missed messages, the broadcast included');
is_deeply($ev[1]{json}{extra}, { n => 3 }, 'with all their fields');
is($ev[1]{json}{sessionId}, 's1', 'and their session');

my $new = $t->publish_ok('/pub', { message => 'new', sessionId => 's1' });
cmp_ok((id_parts($new))[1], '>', (id_parts($other))[1],
       'new ids go on after the old ones');
is((id_parts($new))[0], $before->{epoch}, 'in the same epoch');

@ev = $s->wait_events(1, 10);
is_deeply([ids(@ev)], [$new], 'then live');
$s->close;

# ---- files that are not good -------------------------------------------------

sub restart_with
{
    my ($mangle, $name) = @_;

    $t->stop;

    open my $fh, '<', $file or die "$file: $!";
    my $data = do { local $/; <$fh> };
    close $fh;

    $data = $mangle->($data);

    open $fh, '>', $file or die "$file: $!";
    print $fh $data;
    close $fh;

    my $lines = () = $t->error_log =~ /ignoring/g;

    $t->start;

    my $now = () = $t->error_log =~ /\[error\][^\n]*ignoring[^\n]*chat\.zone/g;
    is($now - $lines, 1, "$name: one error line");

    my $st = status();
    is($st->{retained}, 0, "$name: started with an empty zone");
    isnt($st->{epoch}, $before->{epoch}, "$name: and a new epoch");

    my $id = $t->publish_ok('/pub', { message => 'fresh' });
    ok($id, "$name: publishes work");
}

restart_with(sub { substr($_[0], 0, length($_[0]) / 2) }, 'truncated');
restart_with(sub { my $d = $_[0]; $d =~ s/fresh/FRESH/; $d }, 'damaged');
restart_with(sub { my $d = $_[0]; $d =~ s/^zone chat$/zone other/m; $d },
             'another zone');
restart_with(sub { "garbage\n" x 10 }, 'not ours');

like($t->error_log, qr/truncated/, 'the line says truncated');
like($t->error_log, qr/checksum/, 'or damaged');
like($t->error_log, qr/another zone/, 'or for another zone');

# ---- no file: nothing to say --------------------------------------------------

$t->stop;
unlink $file;
my $lines = () = $t->error_log =~ /ignoring/g;
$t->start;
is(scalar(() = $t->error_log =~ /ignoring/g), $lines,
   'no file at start: no error');

WebhookSSE::SSE->close_all;
finish();
