#!/usr/bin/perl

# Unit tests of the pure JSON logic (src/ngx_http_webhook_sse_json.c):
# builds t/unit/json_test.c with it, under AddressSanitizer and UBSan when
# the toolchain has them, and passes the program's TAP through.

use strict;
use warnings;

use File::Spec;
use File::Temp qw(tempdir);
use FindBin;

$| = 1;

my $root = File::Spec->catdir($FindBin::Bin, File::Spec->updir());
my $src = File::Spec->catfile($root, 'src');
my @sources = (
    File::Spec->catfile($root, 't', 'unit', 'json_test.c'),
    File::Spec->catfile($src, 'ngx_http_webhook_sse_json.c'),
    File::Spec->catfile($src, 'ngx_http_webhook_sse_json_list.c'),
);

my $cc = $ENV{CC} || 'cc';
my @warnings = qw(-Wall -Wextra -Werror);
my @sanitize = ('-fsanitize=address,undefined',
    '-fno-sanitize-recover=undefined', '-fno-omit-frame-pointer');

# LeakSanitizer stays on here whatever the environment says: the tests of
# allocation failures rely on it as well as on their own block counts

$ENV{ASAN_OPTIONS} = join(':', grep { length } $ENV{ASAN_OPTIONS} // '',
    'detect_leaks=1');

my $yajl = `pkg-config --cflags --libs yajl 2>/dev/null`;
my @yajl = ($? == 0 && $yajl =~ /\S/) ? split(' ', $yajl) : ('-lyajl');

my $dir = tempdir('webhook-json-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub bail {
    my ($why, $log) = @_;

    print "1..1\n";
    print "not ok 1 - $why\n";

    if (defined $log) {
        print map { "# $_\n" } split(/\n/, $log);
    }

    exit 1;
}

# Runs a command, returns its combined output and whether it succeeded.

sub run {
    my (@cmd) = @_;

    my $pid = open(my $fh, '-|');
    bail("cannot fork: $!") unless defined $pid;

    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT) or die "dup: $!";
        exec(@cmd) or do { print "cannot run $cmd[0]: $!\n"; exit 127 };
    }

    local $/;
    my $out = <$fh>;
    close($fh);

    return ($out // '', $? == 0);
}

# The sanitizers must both link and run here (LeakSanitizer needs ptrace,
# which some containers deny); a trivial program tells.

sub sanitizers_work {
    my $probe = File::Spec->catfile($dir, 'probe.c');
    my $bin = File::Spec->catfile($dir, 'probe');

    open(my $fh, '>', $probe) or return 0;
    print $fh "#include <stdlib.h>\n"
        . "int main(void) { free(malloc(1)); return 0; }\n";
    close($fh);

    my (undef, $built) = run($cc, @sanitize, '-o', $bin, $probe);
    return 0 unless $built;

    my (undef, $ran) = run($bin);
    return $ran;
}

my $bin = File::Spec->catfile($dir, 'json_test');
my @common = (@warnings, '-O1', '-g', "-I$src", '-o', $bin, @sources, @yajl);

my ($log, $built);

if (sanitizers_work()) {
    ($log, $built) = run($cc, @sanitize, @common);
    print "# built with AddressSanitizer, LeakSanitizer and UBSan\n"
        if $built;
}

unless ($built) {
    ($log, $built) = run($cc, @common);
    print "# built without sanitizers\n" if $built;
}

bail("build t/unit/json_test.c", $log) unless $built;

# the program prints TAP to our stdout; its exit status is the verdict

system($bin);

if ($? == -1) {
    print "# cannot run $bin: $!\n";
    exit 1;
}

exit($? == 0 ? 0 : 1);
