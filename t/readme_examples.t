#!/usr/bin/perl

# README.md: the commands it gives ("Example configurations", and those
# beside the examples elsewhere) start every conf/*.conf example: with the
# environment each command sets, nginx accepts the file as it is (nginx -t
# on the example, ports aside).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use WebhookSSE::Test;

my $readme = do {
    open my $fh, '<', "$FindBin::Bin/../README.md" or die $!;
    local $/;
    <$fh>;
};

$readme =~ /^## Example configurations\n/m
    or die "README.md: no \"Example configurations\"\n";

# the commands anywhere in the README: the one for conf/forward.conf is in
# "Try it", next to the receiver it needs
my %command;
while ($readme =~ /^```sh\n(.*?)^```$/msg) {
    my $code = $1;
    $code =~ s/\\\n\s*/ /g;
    my ($file) = $code =~ m{util/run\.sh (conf/\S+)} or next;
    $command{$file} = $code;
}

ok($command{'conf/<file>'}, 'README: the command for any example');
ok($command{'conf/secure.conf'}, 'README: the command for secure.conf');

# the environment a command sets, evaluated by bash as a user's shell does
sub env_of
{
    my ($code) = @_;
    $code =~ s{util/run\.sh \S+}{env};
    my %env;
    for (`env -i PATH="$ENV{PATH}" bash -c '$code'`) {
        chomp;
        my ($k, $v) = /^([A-Z_]+)=(.*)$/ or next;
        $env{$k} = $v unless $k =~ /^(PATH|PWD|SHLVL|_)$/;
    }
    return \%env;
}

opendir my $dh, "$FindBin::Bin/../conf" or die $!;
my @confs = sort grep { /\.conf$/ } readdir $dh;
closedir $dh;

for my $name (@confs) {
    my $code = $command{"conf/$name"} // $command{'conf/<file>'};
    my $env = env_of($code);
    delete local @ENV{ grep { /SECRET/ } keys %ENV };
    my $c = WebhookSSE::Test->example($name, env => $env);
    my ($ok, $out) = $c->test_config;
    ok($ok, "README's command starts conf/$name (" . join(' ', sort keys %$env)
            . ')') or diag $out;
}

finish();
