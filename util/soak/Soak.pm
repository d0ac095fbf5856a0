package Soak;

# Runs the soak driver (util/soak/soak.c) against a test server of
# WebhookSSE::Test and reads its figures back; shared by t/soak.t,
# t/reload_load.t and t/zone_soak.t.  Core Perl only.
#
#     use lib "$FindBin::Bin/lib", "$FindBin::Bin/../util/soak";
#     use Soak;
#
#     my $run = Soak->start($t, '--rate' => 10000, '--duration' => 20, ..);
#     ... (reload, watch the server) while $run->running ...
#     my $r = $run->wait;       # { exit, final => {..}, checkpoints => [..] }
#
# Durations: Soak::seconds(DEFAULT, ASAN_DEFAULT) is $ENV{SOAK_SECONDS}
# when set, else the default for the build under test (AddressSanitizer
# when TEST_WEBHOOK_SSE_ASAN_DIR is set: slower, so less load).
# $ENV{SOAK_RATE} overrides the publish rate the same way (Soak::rate).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

our $SEQ = 0;

my $ROOT = abs_path(dirname(__FILE__) . '/../..');

sub asan { $ENV{TEST_WEBHOOK_SSE_ASAN_DIR} ? 1 : 0 }

sub seconds
{
    my ($default, $asan_default) = @_;
    return $ENV{SOAK_SECONDS} if $ENV{SOAK_SECONDS};
    return asan() ? $asan_default : $default;
}

sub rate
{
    my ($default, $asan_default) = @_;
    return $ENV{SOAK_RATE} if $ENV{SOAK_RATE};
    return asan() ? $asan_default : $default;
}

sub long_run { $ENV{SOAK_SECONDS} ? 1 : 0 }


# Builds the driver (util/soak/build.sh) and returns its path.

sub binary
{
    my $out = `"$ROOT/util/soak/build.sh" 2>&1`;
    die "util/soak/build.sh failed:\n$out" if $?;
    my ($bin) = $out =~ /(\S+)\s*\z/;
    return $bin;
}


# start($t, OPTION => VALUE, ..): the driver against $t's first port.
# Options without a value are given as OPTION => undef.

sub start
{
    my ($class, $t, @args) = @_;

    my $bin = binary();
    my @argv = ($bin, '--port', $t->port);
    my %opt;

    while (my ($k, $v) = splice @args, 0, 2) {
        push @argv, $k, defined $v ? $v : ();
        $opt{$k} = $v;
    }

    my $n = ++$SEQ;
    my $out = $t->dir . "/logs/soak-$n.out";
    my $err = $t->dir . "/logs/soak-$n.err";

    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        { exec @argv }
        POSIX::_exit(127);
    }

    my $duration = $opt{'--duration'} // 20;

    return bless {
        pid      => $pid,
        out      => $out,
        err      => $err,
        argv     => \@argv,
        started  => time,
        deadline => time + $duration + 120,
    }, $class;
}


sub running
{
    my ($self) = @_;
    return 0 if defined $self->{status};
    my $r = waitpid $self->{pid}, POSIX::WNOHANG();
    return 1 if $r == 0;
    $self->{status} = $?;
    return 0;
}


# Waits (bounded) until the driver has every stream open and starts
# publishing (it says so on stderr unless --quiet); true when it did.
# Returns at once, false, when the driver ended before.

sub wait_publishing
{
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 30);

    while (time < $deadline) {
        if (open my $fh, '<', $self->{err}) {
            local $/;
            my $text = <$fh> // '';
            if ($text =~ /streams open in .*; publishing/) {
                $self->{publishing} = time;
                return 1;
            }
        }
        return 0 unless $self->running;
        sleep 0.02;
    }
    return 0;
}


# Waits for the driver (bounded: its duration plus two minutes), then
# parses its output.

sub wait
{
    my ($self) = @_;

    while ($self->running) {
        if (time > $self->{deadline}) {
            kill 'TERM', $self->{pid};
            sleep 1;
            kill 'KILL', $self->{pid};
            waitpid $self->{pid}, 0;
            $self->{status} = $?;
            $self->{timed_out} = 1;
            last;
        }
        sleep 0.05;
    }

    my $json = JSON::PP->new;
    my (@cp, $final);

    if (open my $fh, '<', $self->{out}) {
        while (my $line = <$fh>) {
            my $v = eval { $json->decode($line) } or next;
            if ($v->{final}) {
                $final = $v;
            } elsif (defined $v->{checkpoint}) {
                push @cp, $v;
            }
        }
    }

    my $err = '';
    if (open my $fh, '<', $self->{err}) {
        local $/;
        $err = <$fh> // '';
    }

    return {
        exit        => $self->{status} >> 8,
        signal      => $self->{status} & 127,
        timed_out   => $self->{timed_out} // 0,
        final       => $final,
        checkpoints => \@cp,
        stderr      => $err,
        seconds     => time - $self->{started},
        argv        => $self->{argv},
    };
}


# Memory growth in the second half of a series of checkpoints: the first
# half is the warm-up.  Returns (value at the middle, highest value after
# it, last value, growth = highest - middle).

sub second_half_growth
{
    my ($values) = @_;
    my @v = @$values;
    return (0, 0, 0, 0) unless @v;
    my $mid = int($#v / 2);
    my $max = $v[$mid];
    for (@v[$mid .. $#v]) {
        $max = $_ if $_ > $max;
    }
    return ($v[$mid], $max, $v[-1], $max - $v[$mid]);
}


# (value at index FROM, max from there, last, growth): second_half_growth
# from a given checkpoint on (one after which a growth means a leak).

sub growth_from
{
    my ($values, $from) = @_;
    my @v = @$values;
    return (0, 0, 0, 0) unless @v && $from <= $#v;
    my $max = $v[$from];
    for (@v[$from .. $#v]) {
        $max = $_ if $_ > $max;
    }
    return ($v[$from], $max, $v[-1], $max - $v[$from]);
}


# The driver's figures as note() lines (shown with prove -v).

sub describe
{
    my ($r) = @_;
    my $f = $r->{final} or return "no final figures; stderr:\n$r->{stderr}";
    my @keys = sort keys %$f;
    my $text = join '', map { "  $_ = $f->{$_}\n" } @keys;
    return "soak driver: @{ $r->{argv} }\n$text";
}

1;
