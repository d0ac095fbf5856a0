#!/usr/bin/perl

# nginx -s reload with 100 open streams: the old workers end their streams
# promptly (a short retry first), messages published meanwhile are not
# lost (clients resume with Last-Event-ID on the new workers), the old
# worker processes exit, and activeConnections stays exact.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use POSIX ();
use Test::More;
use Time::HiRes qw(time);
use WebhookSSE::Test;

my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
    webhook_zone zone=chat:16m history=500;

    server {
        listen 127.0.0.1:%%PORT%%;

        location = /pub    { webhook_publish chat; }
        location = /stream { webhook_stream chat; webhook_replay 0; }
    }
EOF

sub active
{
    my $r = $t->request('GET', '/pub');
    return $r->{json} ? $r->{json}{activeConnections} : undef;
}

my @pub;    # [id, session]

sub pub
{
    my ($body) = @_;
    my $id = $t->publish_ok('/pub', $body);
    push @pub, [ $id, $body->{sessionId} ];
    return $id;
}

sub seq_of { (id_parts($_[0]))[1] // 0 }

sub expected
{
    my ($session, $after) = @_;
    my $from = defined $after ? seq_of($after) : 0;
    return [ map { $_->[0] }
             grep { (!defined $_->[1]
                     || (defined $session && $_->[1] eq $session))
                    && seq_of($_->[0]) > $from } @pub ];
}

sub publish_round
{
    my ($tag, $n) = @_;
    for my $i (0 .. $n - 1) {
        pub($i % 4 == 3 ? { message => "$tag b$i" }
                        : { message => "$tag t$i",
                            sessionId => 'r' . ($i % 10) });
    }
}

# 80 streams in 10 sessions, 20 without a session
my (@streams, %session_of);
for my $i (0 .. 99) {
    my $sess = $i < 80 ? 'r' . ($i % 10) : undef;
    my $s = $t->sse('/stream' . (defined $sess ? "?sessionId=$sess" : ''));
    $session_of{$s} = $sess;
    push @streams, $s;
}

ok(WebhookSSE::SSE::wait_all(\@streams, sub { $_[0]->pending_events }, 10),
   '100 streams connected');
$_->wait_events(1, 0) for @streams;

is(active(), 100, 'activeConnections: 100 before reload');

publish_round('before', 20);
my $mark = pub({ message => 'before marker' });
ok(WebhookSSE::SSE::wait_all(\@streams, sub {
       grep { ($_->{id} // '') eq $mark } @{ $_[0]{events} } }, 10),
   'all streams receive messages before the reload');

{
    my $bad = grep {
        my $s = $_;
        join(',', map { $_->{id} } @{ $s->{events} }[1 .. $#{ $s->{events} }])
            ne join(',', @{ expected($session_of{$s}) });
    } @streams;
    is($bad, 0, 'before reload: every stream got exactly its messages');
}

# ----- reload ------------------------------------------------------------------

# a child keeps publishing through the reload
pipe my $rd, my $wr or die "pipe: $!";
my $kid = fork // die "fork: $!";
if ($kid == 0) {
    close $rd;
    my $fail = 0;
    for my $i (0 .. 59) {
        my $sess = $i % 3 ? 'r' . ($i % 10) : undef;
        my $r = eval { $t->publish('/pub', { message => "through $i",
                                             defined $sess
                                             ? (sessionId => $sess) : () }) };
        if ($r && $r->{status} == 200) {
            print $wr "$r->{json}{messageId} " . ($sess // '') . "\n";
        } else {
            $fail++;
        }
        Time::HiRes::sleep(0.01);
    }
    print $wr "fail $fail\n";
    close $wr;
    POSIX::_exit(0);
}
close $wr;

my $t0 = time;
my @old = $t->reload;
my $t_reloaded = time;

# published while the old workers are ending their streams
publish_round('during', 20);

my $closed = WebhookSSE::SSE::wait_all(\@streams, sub { $_[0]{closed} }, 5);
my $dt = time - $t_reloaded;
my $n_closed = grep { $_->{closed} } @streams;

is($n_closed, 100, 'reload: old workers end all 100 streams');
ok($closed && $dt < 3,
   sprintf('reload: streams ended %.2f s after the new workers started '
           . '(< 3 s)', $dt));

{
    my $short = grep { @{ $_->{retry} } >= 2
                       && $_->{retry}[-1] < 2000 } @streams;
    is($short, 100, 'reload: each ended stream got a short retry: first');
}

ok($t->wait_pids_gone(\@old, 5), 'reload: old worker processes exit');

{
    my @lines;
    my $sel = IO::Select->new($rd);
    my $deadline = time + 10;
    my $buf = '';
    while (time < $deadline && $sel->can_read($deadline - time)) {
        last unless sysread $rd, $buf, 65536, length $buf;
    }
    waitpid $kid, 0;
    my ($fail) = $buf =~ /^fail (\d+)$/m;
    is($fail, 0, 'publishes during the reload: all 60 answered 200');
    for (split /\n/, $buf) {
        next unless /^(\d+-\d+) (\S*)$/;
        push @pub, [ $1, length $2 ? $2 : undef ];
    }
    @pub = sort { seq_of($a->[0]) <=> seq_of($b->[0]) } @pub;
}

# published after the streams ended, before the clients come back
publish_round('after', 20);

# ----- resume ------------------------------------------------------------------

my @again;
for my $s (@streams) {
    my $last = $s->{last_id};
    my $n = $t->sse('/stream' . (defined $session_of{$s}
                                 ? "?sessionId=$session_of{$s}" : ''),
                    headers => { defined $last ? ('Last-Event-ID' => $last)
                                               : () });
    $session_of{$n} = $session_of{$s};
    $n->{resumed_from} = $last;
    push @again, $n;
}

ok(WebhookSSE::SSE::wait_all(\@again, sub { $_[0]->pending_events }, 10),
   'resume: 100 streams reconnected');

my $final = pub({ message => 'final marker' });

ok(WebhookSSE::SSE::wait_all(\@again, sub {
       grep { ($_->{id} // '') eq $final } @{ $_[0]{events} } }, 10),
   'resume: all 100 streams live on the new workers');

{
    my ($bad, $total) = (0, 0);
    for my $i (0 .. $#again) {
        my $n = $again[$i];
        my $old = $streams[$i];
        my @ev = @{ $n->{events} };
        shift @ev;                  # connected
        my @got = map { $_->{id} } @ev;
        my $want = expected($session_of{$n}, $n->{resumed_from});

        # what the old stream saw plus what the new one got = everything
        my @before = map { $_->{id} } @{ $old->{events} }[1 .. $#{ $old->{events} }];
        my $all = expected($session_of{$n});
        $total += @got;

        if (join(',', @got) ne join(',', @$want)
            || join(',', @before, @got) ne join(',', @$all))
        {
            diag "stream $i (" . ($session_of{$n} // 'none') . "): got "
                 . scalar(@got) . ", want " . scalar(@$want)
                if ++$bad <= 3;
        }
    }
    is($bad, 0, 'resume: every stream gets exactly what it missed, in '
                . "order, no duplicates ($total events replayed+live)");
}

is(active(), 100, 'activeConnections: exactly 100 after reload and '
                  . 'reconnect');

# a second reload: the generation that took over hands over just as well
{
    my @old2 = $t->reload;
    ok(WebhookSSE::SSE::wait_all(\@again, sub { $_[0]{closed} }, 5),
       'second reload: all 100 streams ended');
    my $id = pub({ message => 'between reloads' });
    my @third = map {
        $t->sse('/stream' . (defined $session_of{$_}
                             ? "?sessionId=$session_of{$_}" : ''),
                headers => { 'Last-Event-ID' => $_->{last_id} // $final })
    } @again;
    ok(WebhookSSE::SSE::wait_all(\@third, sub {
           grep { ($_->{id} // '') eq $id } @{ $_[0]{events} } }, 10),
       'second reload: resumed streams get the message published between');
    ok($t->wait_pids_gone(\@old2, 5), 'second reload: old workers exit');
    is(active(), 100, 'activeConnections: exactly 100 after a second '
                      . 'reload');
    @again = @third;
}

$_->close for @again;
ok(wait_until(sub { (active() // -1) == 0 }, 5),
   'activeConnections: 0 after all closed');

finish();
