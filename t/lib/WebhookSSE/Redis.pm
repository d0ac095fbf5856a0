package WebhookSSE::Redis;

# A private redis-server for the tests (Debian's, installed by util/deps.sh):
# its own directory under t/, a free loopback port, started and stopped by
# the test (gracefully, or with kill -9), restarted on the same port and
# data.  Commands go through Debian's redis-cli.
#
#     my $redis = WebhookSSE::Redis->new(appendonly => 1)->start;
#     $redis->port, $redis->cli('GET', 'k'), $redis->kill9, $redis->start,
#     $redis->shutdown (graceful, SHUTDOWN), $redis->stop (at the end)
#
# new(appendonly => 1, password => P, maxmemory => BYTES, conf => [lines])

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
my @SERVERS;
my $SEQ = 0;


sub new
{
    my ($class, %opt) = @_;

    $SEQ++;
    my $dir = "$ROOT/t/servroot-redis-$$-$SEQ";
    remove_tree($dir) if -d $dir;
    make_path($dir);

    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot bind a free port: $!";

    my $self = bless { dir => $dir, port => $s->sockport, opt => \%opt },
                     $class;

    push @SERVERS, $self;
    return $self;
}


sub port { $_[0]{port} }

sub dir { $_[0]{dir} }

sub url { 'redis://127.0.0.1:' . $_[0]{port} }


sub _write_conf
{
    my ($self) = @_;
    my $o = $self->{opt};

    my @conf = ("port $self->{port}", 'bind 127.0.0.1', "dir $self->{dir}",
                'save ""', 'daemonize no', "logfile $self->{dir}/redis.log",
                'appendonly ' . ($o->{appendonly} ? 'yes' : 'no'));
    push @conf, "requirepass $o->{password}" if defined $o->{password};
    push @conf, "maxmemory $o->{maxmemory}", 'maxmemory-policy noeviction'
        if $o->{maxmemory};
    push @conf, @{ $o->{conf} // [] };

    open my $fh, '>', "$self->{dir}/redis.conf" or die "redis.conf: $!";
    print $fh map { "$_\n" } @conf;
    close $fh;
}


# Starts (or restarts, same port and data) and waits until it answers.
# The server that answers must be this one (INFO's process_id): the free
# port was released when new() chose it, and another test's redis-server
# (of this suite or another checkout on the machine) may have taken it
# since; this one then exits on "Address already in use" while the other
# answers PING, and the test would run against a server someone else
# stops.  On a first start another free port is taken then (5 tries);
# a restart must keep its port and dies instead.

sub start
{
    my ($self) = @_;

    for my $try (1 .. 5) {
        my $r = $self->_start_once;
        return $self if $r eq 'ok';
        die "redis-server: port $self->{port} taken by another process "
            . "(restart)\n" . $self->log_tail if $self->{started};
        die "redis-server: no free port in 5 tries\n" if $try == 5;
        unlink "$self->{dir}/redis.log";
        $self->{port} = _free_port();
    }
}


sub _free_port
{
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot bind a free port: $!";
    return $s->sockport;
}


# 'ok' once our server answers, 'taken' when it exited because the port
# is in use; dies otherwise.

sub _start_once
{
    my ($self) = @_;

    $self->_write_conf;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setsid();
        exec 'redis-server', "$self->{dir}/redis.conf";
        exit 127;
    }
    $self->{pid} = $pid;

    my $deadline = time + 20;
    while (time < $deadline) {
        my $pong = $self->cli('PING') // '';
        if ($pong =~ /PONG|NOAUTH/) {
            my ($id) = ($self->cli('INFO', 'server') // '')
                       =~ /process_id:(\d+)/;
            # (NOAUTH: no INFO either; a password test's own server)
            if (!defined $id || $id == $pid) {
                $self->{started} = 1;
                return 'ok';
            }
        }
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            delete $self->{pid};
            return 'taken' if $self->log_tail =~ /Address already in use/;
            die "redis-server exited:\n" . $self->log_tail;
        }
        sleep 0.05;
    }
    die "redis-server did not answer on $self->{port}\n" . $self->log_tail;
}


sub log_tail
{
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/redis.log" or return '';
    my @l = <$fh>;
    return join '', @l[($#l > 20 ? $#l - 20 : 0) .. $#l];
}


# redis-cli ARGS...: the reply text, undef when it could not run

sub cli
{
    my ($self, @args) = @_;
    my @auth = defined $self->{opt}{password}
               ? ('-a', $self->{opt}{password}, '--no-auth-warning') : ();

    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDERR, '>', '/dev/null';
        exec 'timeout', '5', 'redis-cli', '-p', $self->{port}, @auth, @args;
        exit 127;
    }

    local $/;
    my $out = <$fh>;
    close $fh;
    return undef if $? >> 8 == 127;
    $out =~ s/\n\z// if defined $out;
    return $out;
}


sub _wait_gone
{
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        sleep 0.02;
    }
    return 0;
}


sub kill9
{
    my ($self) = @_;
    return unless $self->{pid};
    kill 'KILL', $self->{pid};
    $self->_wait_gone(10);
    delete $self->{pid};
}


# SHUTDOWN: Redis saves (AOF) and closes its clients

sub shutdown
{
    my ($self) = @_;
    return unless $self->{pid};
    $self->cli('SHUTDOWN');
    unless ($self->_wait_gone(10)) {
        kill 'KILL', $self->{pid};
        $self->_wait_gone(5);
    }
    delete $self->{pid};
}


sub stop
{
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    unless ($self->_wait_gone(10)) {
        kill 'KILL', $self->{pid};
        $self->_wait_gone(5);
    }
    delete $self->{pid};
}


END {
    local $?;
    for my $s (@SERVERS) {
        $s->stop;
        remove_tree($s->{dir}) unless $ENV{TEST_KEEP_SERVROOT};
    }
}


1;
