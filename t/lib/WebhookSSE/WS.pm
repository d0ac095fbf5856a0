package WebhookSSE::WS;

# A WebSocket subscriber for the tests: the npm ws client
# (t/clients/ws-client.js, installed by `make test` with npm ci) in a child
# process, driven line by line.
#
#     my $ws = WebhookSSE::WS->new(url => "ws://127.0.0.1:$port/stream?..",
#                                  resume => 1, no_pong => 0);
#     $ws->wait_for(sub { grep { $_ eq 'OPEN' } @{ $_[0]->lines } }, 10);
#     my @events = $ws->messages;       # decoded JSON, in order
#     $ws->command('close');
#
# Every wait is bounded and returns false when the time ran out.

use strict;
use warnings;

use File::Basename qw(dirname);
use IO::Select;
use IPC::Open2 qw(open2);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time);

my $DIR = dirname(dirname(dirname(__FILE__))) . '/clients';
my $JSON = JSON::PP->new->utf8;
my %ALL;


# why the client cannot run here, or undef

sub unavailable
{
    return 'node is not installed' unless grep { -x "$_/node" }
                                          split /:/, $ENV{PATH} // '';
    return "$DIR/node_modules/ws is missing (cd t/clients && npm ci)"
        unless -d "$DIR/node_modules/ws";
    return undef;
}


sub new
{
    my ($class, %opt) = @_;

    my @cmd = ('node', "$DIR/ws-client.js", $opt{url});
    push @cmd, '--resume' if $opt{resume};
    push @cmd, '--no-pong' if $opt{no_pong};
    push @cmd, '--max-reconnects', $opt{max_reconnects}
        if defined $opt{max_reconnects};
    push @cmd, '--origin', $opt{origin} if defined $opt{origin};

    my ($out, $in);
    my $pid = open2($out, $in, @cmd);
    $in->autoflush(1);

    my $self = bless { pid => $pid, out => $out, in => $in, buf => '',
                       lines => [] }, $class;
    $ALL{$pid} = $self;
    return $self;
}


sub _read
{
    my ($self, $timeout) = @_;
    return 0 unless $self->{out};

    my $sel = IO::Select->new($self->{out});
    return 0 unless $sel->can_read($timeout);

    my $n = sysread $self->{out}, $self->{buf}, 65536, length $self->{buf};
    if (!$n) {
        close $self->{out};
        $self->{out} = undef;
        return 0;
    }

    while ($self->{buf} =~ s/^([^\n]*)\n//) {
        push @{ $self->{lines} }, $1;
    }
    return 1;
}


# reads what is there, then: every line so far
sub lines
{
    my ($self) = @_;
    1 while $self->_read(0);
    return $self->{lines};
}


sub messages
{
    my ($self) = @_;
    return map { /^MSG (.*)\z/s ? $JSON->decode($1) : () }
           @{ $self->lines };
}


sub message_ids
{
    my ($self) = @_;
    return map { $_->{messageId} // () } $self->messages;
}


sub count
{
    my ($self, $re) = @_;
    return scalar grep { $_ =~ $re } @{ $self->lines };
}


# waits until $cond->($self) is true, reading as lines come
sub wait_for
{
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);

    while (1) {
        1 while $self->_read(0);
        my $v = $cond->($self);
        return $v if $v;
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->_read($left > 0.2 ? 0.2 : $left);
    }
}


sub wait_line
{
    my ($self, $re, $timeout, $n) = @_;
    $n //= 1;
    return $self->wait_for(sub { $_[0]->count($re) >= $n }, $timeout);
}


sub wait_ids
{
    my ($self, $ids, $timeout) = @_;
    my %want = map { $_ => 1 } @$ids;
    return $self->wait_for(sub {
        my %got = map { $_ => 1 } $_[0]->message_ids;
        !grep { !$got{$_} } keys %want;
    }, $timeout);
}


sub command
{
    my ($self, $cmd) = @_;
    print { $self->{in} } "$cmd\n";
}


sub stop
{
    my ($self) = @_;
    return unless $self->{pid};
    kill 'KILL', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $ALL{ $self->{pid} };
    $self->{pid} = undef;
}


sub stop_all
{
    $_->stop for values %ALL;
}


END { stop_all() }


1;
