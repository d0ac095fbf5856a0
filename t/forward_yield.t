#!/usr/bin/perl

# webhook_forward_yield: while a worker is busy with publishes its
# deliveries may wait, but no longer than the bound.  Six publishers keep
# one worker busy with batches of pipelined publishes (a few thousand a
# second: the zone's share for waiting deliveries, an eighth, 32 MB here,
# takes longer to fill than this test waits); deliveries must flow to the
# receiver while they are still publishing (with a wait of an hour, only
# the few made before the worker turned busy would), and once the
# publishers stop every accepted message is delivered, each once.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use WebhookSSE::Test;
use WebhookSSE::Receiver;

my $PUBLISHERS = 6;
my $CAP = 60;

my $t = WebhookSSE::Test->new(http => '', workers => 1);
my $rcv = WebhookSSE::Receiver->start(node => $t->dir);
my $port = $rcv->port;

$t->set_config(http => <<"CONF");
    webhook_zone zone=chat:256m;
    webhook_forward_rate off;
    webhook_forward_concurrency 4;
    webhook_forward_yield 500ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /pub {
            webhook_publish chat;
            webhook_forward http://127.0.0.1:$port/in;
        }
        location = /status { webhook_status chat; }
    }
CONF
$t->start;

my $stop = $t->dir . '/stop-publishing';
my @kids;

for my $k (1 .. $PUBLISHERS) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        # publishes until told to stop (bounded), writes the ids it got
        my $deadline = time + $CAP;
        # (POSIX::_exit: the parent's servers are not this copy's to stop)
        open my $out, '>', $t->dir . "/ids-$k" or POSIX::_exit(1);
        while (!-e $stop && time < $deadline) {
            # pipelined: many publishes in one turn of the worker's loop
            my @r = eval {
                $t->publish_pipelined('/pub', [ map { { message => "m$k",
                                                         sessionId => "s$k" }
                                                    } 1 .. 20 ]);
            };
            for my $r (@r) {
                print $out "$r->{json}{messageId}\n"
                    if $r->{status} == 200 && $r->{json};
            }
            sleep 0.03;
        }
        close $out;
        POSIX::_exit(0);
    }

    push @kids, $pid;
}

# 10 times the bound
my @got = $rcv->wait_requests(sub { @_ >= 200 }, 5);
my $running = grep { kill 0, $_ } @kids;

cmp_ok(scalar @got, '>=', 200, 'deliveries flow during the flood');
is($running, $PUBLISHERS, 'while all publishers were still publishing');

open my $fh, '>', $stop or die "$stop: $!";
close $fh;
waitpid $_, 0 for @kids;

my @ids;
for my $k (1 .. $PUBLISHERS) {
    open my $in, '<', $t->dir . "/ids-$k" or next;
    chomp(my @l = <$in>);
    push @ids, @l;
}

cmp_ok(scalar @ids, '>', 200, scalar(@ids) . ' messages published');

my %want = map { $_ => 1 } @ids;
my @all = $rcv->wait_requests(sub {
    my %seen = map { $_->{id} => 1 } @_;
    return !grep { !$seen{$_} } keys %want;
}, 60);

my %n;
$n{ $_->{id} }++ for @all;

is(scalar(grep { !$n{$_} } @ids), 0, 'every accepted message delivered');
is(scalar(grep { $n{$_} > 1 } keys %n), 0, 'none twice');

wait_until(sub {
    my $st = $t->request('GET', '/status')->{json};
    my ($ep) = @{ $st->{outbound} // [] };
    $ep && $ep->{delivered} == @ids && !$ep->{queued} && !$ep->{inflight};
}, 10);

my $st = $t->request('GET', '/status')->{json};
my ($ep) = @{ $st->{outbound} // [] };
is($ep->{delivered}, scalar @ids, "status: each delivery recorded once") or diag(json_encode($st));

finish();
