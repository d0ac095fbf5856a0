package WebhookSSE::Receiver;

# Receivers of outbound deliveries for the tests: t/receivers/receiver.js
# (Express, npm standardwebhooks) or t/receivers/receiver.py (Flask,
# Python's hmac), started on a free loopback port and always stopped.
#
#     my $rcv = WebhookSSE::Receiver->start(node => $dir, secret => $s,
#                                           plan => '503,200');
#     $rcv->port; $rcv->url('/in');
#     my @req = $rcv->wait_requests(sub { @_ >= 3 }, 10);
#
# start(node|python => DIR, secret =>, plan =>, delay_ms =>): DIR holds the
# port file and the log.  requests: every request so far (hashes: t, path,
# id, attempt, timestamp, signature, verified, body, raw, answer, inflight).
# wait_requests(COND, timeout): until COND(@requests) holds, bounded.
# vector: whether the library verified the Standard Webhooks test vector
# (node).  stop.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use JSON::PP ();
use Time::HiRes qw(time sleep);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my $DIR = "$ROOT/t/receivers";
my @LIVE;
my $SEQ = 0;


sub start
{
    my ($class, %opt) = @_;

    my ($kind) = grep { exists $opt{$_} } qw(node python);
    die "receiver: node => DIR or python => DIR\n" unless $kind;

    if ($kind eq 'node' && !-d "$DIR/node_modules/standardwebhooks") {
        die "receiver: t/receivers/node_modules is missing: run make test "
            . "(npm ci in t/receivers)\n";
    }

    $SEQ++;
    my $dir = $opt{$kind};
    my $port_file = "$dir/receiver-$SEQ.port";
    my $log = "$dir/logs/receiver-$SEQ.log";
    unlink $port_file;

    my @cmd = $kind eq 'node'
        ? ('node', "$DIR/receiver.js")
        : ('/usr/bin/python3', "$DIR/receiver.py");

    push @cmd, '--port-file', $port_file, '--log', $log;
    push @cmd, '--secret', $opt{secret} if defined $opt{secret};
    push @cmd, '--plan', $opt{plan} if defined $opt{plan};
    push @cmd, '--delay-ms', $opt{delay_ms} if defined $opt{delay_ms};

    open my $touch, '>>', $log or die "$log: $!";
    close $touch;

    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>>', "$log.out";
        open STDERR, '>&', \*STDOUT;
        exec @cmd;
        exit 127;
    }

    my $self = bless { pid => $pid, log => $log, kind => $kind }, $class;
    push @LIVE, $self;

    my $deadline = time + 20;

    until (-s $port_file) {
        if (waitpid($pid, 1) == $pid || time > $deadline) {
            my $out = do { local (@ARGV, $/) = "$log.out"; <> } // '';
            die "receiver ($kind) did not start:\n$out\n";
        }
        sleep 0.02;
    }

    $self->{port} = do { local (@ARGV, $/) = $port_file; <> };
    return $self;
}


sub port { $_[0]{port} }

sub url { my ($self, $path) = @_; "http://127.0.0.1:$self->{port}" . ($path // '/') }


sub _lines
{
    my ($self) = @_;

    open my $fh, '<', $self->{log} or return ();
    my @all;
    while (my $line = <$fh>) {
        next unless $line =~ /\n\z/;
        my $v = eval { JSON::PP->new->utf8->decode($line) };
        push @all, $v if $v;
    }
    return @all;
}


sub requests { grep { exists $_->{path} } $_[0]->_lines }

sub vector
{
    my ($self) = @_;
    my ($v) = grep { exists $_->{vector} } $self->_lines;
    return $v ? $v->{vector} : undef;
}


sub wait_requests
{
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);

    while (1) {
        my @r = $self->requests;
        return @r if $cond->(@r);
        return () if time > $deadline;
        sleep 0.05;
    }
}


sub stop
{
    my ($self) = @_;
    return unless $self->{pid};
    local $?;
    kill 'TERM', $self->{pid};

    my $deadline = time + 5;
    while (waitpid($self->{pid}, 1) != $self->{pid}) {
        if (time > $deadline) {
            kill 'KILL', $self->{pid};
            waitpid($self->{pid}, 0);
            last;
        }
        sleep 0.02;
    }
    delete $self->{pid};
}


END { local $?; $_->stop for @LIVE }

1;
