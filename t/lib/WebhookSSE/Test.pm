package WebhookSSE::Test;

# Test harness for nginx-webhook-sse: starts a private nginx (daemon, master
# process, the module loaded by absolute path) on free loopback ports from
# an http{} snippet, talks HTTP to it, reloads and stops it, and checks its
# error_log.  Core Perl only.
#
#     use lib 't/lib';
#     use WebhookSSE::Test;
#
#     my $t = WebhookSSE::Test->new(http => <<'EOF')->start;
#         webhook_zone zone=chat:1m;
#         server {
#             listen 127.0.0.1:%%PORT%%;
#             location = /pub { webhook_publish chat; }
#         }
#     EOF
#     my $r = $t->publish('/pub', { message => 'hi' });
#     ...
#     finish();   # stops every nginx, checks error logs, done_testing
#
# Placeholders in the snippets: %%PORT%% (also %%PORT1%%), %%PORT2%% ..
# %%PORT9%% (distinct free ports), %%PREFIX%% (the server's directory).
#
# new(http => SNIPPET, main => LINES, workers => 2, env => {NAME => VALUE},
#     expect_log => [qr/../])      a server under t/servroot-<pid>-<n>/
# example(NAME, ports => {..}, ..) a server running conf/NAME as it is
# start, reload (returns the old worker pids), stop, test_config,
# set_config(http => ..), worker_pids, wait_pids_gone(\@pids, s),
# port(n), dir, error_log, access_log, wait_error_log(qr//, s),
# expect_log(qr//)
# request(METHOD, PATH, headers =>, body =>, port =>)
#                                  { status, headers, body, json }
# publish(PATH, DATA, secret =>, content_type =>), publish_ok (the id),
# publish_pipelined(PATH, [DATA..]), stream_replay(PATH, PUB, MARKER)
# sse(PATH, headers => ..)         a WebhookSSE::SSE stream
# finish()                         stop all, check error logs, done_testing
#
# Error logs are checked for [alert], [crit] and [emerg] lines at finish();
# a server directory is kept when a test failed (TEST_KEEP_SERVROOT=1
# keeps it always).
#
# AddressSanitizer (util/test-asan.sh): with TEST_WEBHOOK_SSE_ASAN_DIR set,
# nginx runs with LD_PRELOAD=$TEST_WEBHOOK_SSE_ASAN_PRELOAD (libasan.so, as
# the packaged nginx is not instrumented; TEST_WEBHOOK_SSE_MODULE names the
# instrumented module) and ASAN_OPTIONS=$TEST_WEBHOOK_SSE_ASAN_OPTIONS plus
# log_path=<dir>/<servroot name>.asan, so reports of daemonized workers land
# in files; finish() fails a server that left any.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(time sleep);

use WebhookSSE::SSE;

our @EXPORT = qw(finish json_encode json_decode wait_until id_parts);

our $NGINX = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

my $ASAN_DIR = $ENV{TEST_WEBHOOK_SSE_ASAN_DIR};

my $ROOT = abs_path(dirname(__FILE__) . '/../../..');
our $MODULE = $ENV{TEST_WEBHOOK_SSE_MODULE}
              || "$ROOT/build/ngx_http_webhook_sse_module.so";

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my @SERVERS;
my $SEQ = 0;


sub json_encode { $JSON->encode($_[0]) }

sub json_decode
{
    my ($text) = @_;
    return undef unless defined $text;
    my $v = eval { $JSON->decode($text) };
    return $v;
}


# wait_until(sub { ... }, timeout): poll a condition every 20 ms, bounded;
# for conditions no event announces (files, process tables).

sub wait_until
{
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);

    while (1) {
        my $v = $cond->();
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.02;
    }
}


sub free_port
{
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1,
                                  ReuseAddr => 0)
        or die "cannot bind a free port: $!";
    return $s;
}


sub new
{
    my ($class, %opt) = @_;

    die "module not built: $MODULE (run make build)\n" unless -f $MODULE;

    $SEQ++;
    my $dir = "$ROOT/t/servroot-$$-$SEQ";
    remove_tree($dir) if -d $dir;
    make_path("$dir/logs", "$dir/conf",
              map { "$dir/tmp/$_" } qw(client_body proxy fastcgi uwsgi scgi));

    my $self = bless {
        dir        => $dir,
        http       => $opt{http} // '',
        conf       => $opt{conf},
        main       => $opt{main} // '',
        workers    => $opt{workers} // $opt{worker_processes} // 2,
        env        => $opt{env} // {},
        connections => $opt{worker_connections} // 4096,
        expect_log => [ @{ $opt{expect_log} // [] } ],
        ports      => {},
        running    => 0,
    }, $class;

    push @SERVERS, $self;
    return $self;
}



# example(NAME, ports => { PORT => REPLACEMENT }, OPTIONS of new)
# A server running the example conf/NAME as it is; only what ties the file
# to a checkout changes: load_module names the module under test (with
# "user root;" when run as root), the first error_log and pid go into the
# server's directory, as do run/tmp/* and run/*.log, "root conf/html"
# points at the repository's page, and 127.0.0.1:8080 becomes %%PORT%%.
# ports => maps other loopback ports everywhere they appear, to a
# placeholder ({ 3000 => '%%PORT2%%' }) or a port of the test's own
# ({ 5000 => $port }).

sub example
{
    my ($class, $name, %opt) = @_;
    my %ports = (8080 => '%%PORT%%', %{ delete $opt{ports} // {} });

    open my $fh, '<', "$ROOT/conf/$name" or die "conf/$name: $!";
    my $text = do { local $/; <$fh> };
    close $fh;

    my $user = $> == 0 ? "user root;\n" : '';

    $text =~ s{^load_module \S+;}{${user}load_module $MODULE;}m
        or die "conf/$name: no load_module\n";
    $text =~ s{^(\s*)error_log [^;]+;}
              {${1}error_log %%PREFIX%%/logs/error.log info;}m;
    $text =~ s{^(\s*)pid [^;]+;}{${1}pid %%PREFIX%%/logs/nginx.pid;}m;
    $text =~ s{\brun/tmp/(\w+)}{%%PREFIX%%/tmp/$1}g;
    $text =~ s{\brun/([\w.-]+\.log)\b}{%%PREFIX%%/logs/$1}g;
    $text =~ s{\broot conf/html;}{root $ROOT/conf/html;}g;
    $text =~ s{\b127\.0\.0\.1:(\d+)\b}
              {exists $ports{$1} ? "127.0.0.1:$ports{$1}" : $&}ge;

    return $class->new(%opt, conf => $text);
}


sub dir { $_[0]{dir} }

sub port { my ($self, $n) = @_; $self->{ports}{ $n // 1 } }

sub error_log_path { "$_[0]{dir}/logs/error.log" }

sub access_log_path { "$_[0]{dir}/logs/access.log" }


# Error-log lines matching these are allowed even at alert/crit/emerg.

sub expect_log
{
    my ($self, @re) = @_;
    push @{ $self->{expect_log} }, @re;
    return $self;
}


sub _substitute
{
    my ($self, $text) = @_;

    $text =~ s/%%PORT(\d?)%%/$self->_port_for($1 eq '' ? 1 : $1)/ge;
    $text =~ s/%%PREFIX%%/$self->{dir}/g;
    return $text;
}


sub _port_for
{
    my ($self, $n) = @_;

    unless ($self->{ports}{$n}) {
        my $s = free_port();
        $self->{ports}{$n} = $s->sockport;
        $self->{port_sockets}{$n} = $s;
    }
    return $self->{ports}{$n};
}


sub write_config
{
    my ($self) = @_;
    my $d = $self->{dir};

    my $http = $self->_substitute($self->{http});
    my $main = $self->_substitute($self->{main});

    # run as root, workers would be nobody, who may not reach a checkout
    # under /root (temp files of buffered bodies live in the prefix)
    my $user = $> == 0 ? 'user root;' : '';

    my $conf = <<"EOF";
load_module $MODULE;
$user

daemon on;
master_process on;
worker_processes $self->{workers};
worker_rlimit_nofile 16384;
pid $d/logs/nginx.pid;
error_log $d/logs/error.log info;

$main

events {
    worker_connections $self->{connections};
}

http {
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    access_log $d/logs/access.log;

$http
}
EOF

    # a whole configuration of the caller's (conf/ examples), substituted
    $conf = $self->_substitute($self->{conf}) if defined $self->{conf};

    open my $fh, '>', "$d/conf/nginx.conf" or die "$d/conf/nginx.conf: $!";
    print $fh $conf;
    close $fh;

    return $conf;
}


# Change the http{} or main snippet (e.g. before a reload).

sub set_config
{
    my ($self, %opt) = @_;
    $self->{http} = $opt{http} if exists $opt{http};
    $self->{main} = $opt{main} if exists $opt{main};
    $self->{workers} = $opt{workers} if exists $opt{workers};
    return $self;
}


sub _nginx
{
    my ($self, @args) = @_;
    my $d = $self->{dir};

    local %ENV = (%ENV, %{ $self->{env} }, $self->_asan_env);

    my $out = "$d/logs/nginx-cmd.out";
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec $NGINX, '-p', "$d/", '-c', "$d/conf/nginx.conf",
             '-e', "$d/logs/error.log", @args;
        exit 127;
    }

    waitpid $pid, 0;
    my $rc = $? >> 8;

    my $text = '';
    if (open my $fh, '<', $out) {
        local $/;
        $text = <$fh> // '';
    }
    return ($rc, $text);
}


# Check the configuration only: returns (ok, nginx -t output).

sub test_config
{
    my ($self) = @_;
    $self->write_config;
    delete $self->{port_sockets};
    my ($rc, $out) = $self->_nginx('-t');
    return ($rc == 0, $out);
}


sub start
{
    my ($self) = @_;

    $self->write_config;

    # release the ports we held so nginx can bind them
    delete $self->{port_sockets};

    # running before nginx is: a test killed (TERM, a repeat loop ended)
    # while nginx daemonizes still stops it
    $self->{running} = 1;

    my ($rc, $out) = $self->_nginx();
    if ($rc != 0) {
        $self->{running} = 0;
        die "nginx failed to start (rc $rc):\n$out\n" . $self->_log_tail;
    }

    my $ok = wait_until(sub {
        my $pid = $self->master_pid or return 0;
        return 0 unless _alive($pid);
        return 0 unless $self->worker_pids == $self->{workers};
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->port,
                                      Proto => 'tcp', Timeout => 1);
        return $s ? 1 : 0;
    }, 10);

    die "nginx did not come up in 10 s\n" . $self->_log_tail unless $ok;

    $self->{master} = $self->master_pid;
    return $self;
}


# Environment for nginx under AddressSanitizer; empty unless asked for.

sub _asan_log_path
{
    my ($self) = @_;
    my ($name) = $self->{dir} =~ m{([^/]+)\z};
    return "$ASAN_DIR/$name.asan";
}


sub _asan_env
{
    my ($self) = @_;
    return () unless $ASAN_DIR;
    my $opt = $ENV{TEST_WEBHOOK_SSE_ASAN_OPTIONS} // '';
    return (
        ($ENV{TEST_WEBHOOK_SSE_ASAN_PRELOAD}
         ? (LD_PRELOAD => $ENV{TEST_WEBHOOK_SSE_ASAN_PRELOAD}) : ()),
        ASAN_OPTIONS => join(':', grep { length } $opt,
                             'log_path=' . $self->_asan_log_path),
    );
}


sub _log_tail
{
    my ($self) = @_;
    my $log = $self->error_log;
    my @l = split /\n/, $log;
    @l = @l[-30 .. -1] if @l > 30;
    return join("\n", "error_log tail:", @l) . "\n";
}


sub master_pid
{
    my ($self) = @_;
    open my $fh, '<', "$self->{dir}/logs/nginx.pid" or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /^(\d+)/;
    return $1;
}


sub _proc_stat
{
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $line = <$fh> // return;
    my $i = rindex $line, ')';
    return if $i < 0;
    my @f = split ' ', substr($line, $i + 2);
    return ($f[0], $f[1]);          # state, ppid
}


sub _alive
{
    my ($pid) = @_;
    my ($state) = _proc_stat($pid);
    return defined $state && $state ne 'Z' && $state ne 'X';
}


# Live (non-zombie) children of the master: the worker processes.

sub worker_pids
{
    my ($self) = @_;
    my $master = $self->{master} // $self->master_pid // return ();
    my @pids;

    opendir my $dh, '/proc' or return ();
    for my $p (readdir $dh) {
        next unless $p =~ /^\d+$/;
        my ($state, $ppid) = _proc_stat($p);
        next unless defined $ppid && $ppid == $master;
        next if $state eq 'Z' || $state eq 'X';
        push @pids, $p;
    }
    closedir $dh;
    @pids = sort { $a <=> $b } @pids;
    return wantarray ? @pids : scalar @pids;
}


# nginx -s reload; waits until a full new generation of workers is up.
# Returns the old worker pids.

sub reload
{
    my ($self, %opt) = @_;

    my @old = $self->worker_pids;
    my %old = map { $_ => 1 } @old;

    $self->write_config;
    delete $self->{port_sockets};

    my ($rc, $out) = $self->_nginx('-s', 'reload');
    die "nginx -s reload failed (rc $rc): $out" if $rc != 0;

    my $ok = wait_until(sub {
        my @new = grep { !$old{$_} } $self->worker_pids;
        return @new >= $self->{workers};
    }, $opt{timeout} // 10);

    die "new workers did not start within 10 s after reload\n"
        . $self->_log_tail unless $ok;

    # The master tells the old workers to quit only after starting the new
    # ones; until they do, they still accept.  A quitting worker renames
    # itself "worker process is shutting down" right before it closes its
    # listening sockets.
    $ok = wait_until(sub {
        for my $pid (@old) {
            next unless _alive($pid);
            open my $fh, '<', "/proc/$pid/cmdline" or next;
            my $title = <$fh> // '';
            return 0 unless $title =~ /shutting down/;
        }
        return 1;
    }, $opt{timeout} // 10);

    die "old workers did not start shutting down within 10 s\n"
        . $self->_log_tail unless $ok;

    sleep 0.05;

    return @old;
}


# True when none of the given pids is alive any more (bounded wait).

sub wait_pids_gone
{
    my ($self, $pids, $timeout) = @_;
    return wait_until(sub { !grep { _alive($_) } @$pids }, $timeout // 5);
}


sub stop
{
    my ($self) = @_;
    return unless $self->{running};

    # (a master that is still daemonizing writes its pid file shortly)
    my $master = $self->{master}
                 // wait_until(sub { $self->master_pid }, 5);
    my @workers = $self->worker_pids;
    $self->{running} = 0;

    # a later start() has a master of its own
    delete $self->{master};

    return unless $master;

    kill 'TERM', $master;
    my $gone = wait_until(sub { !_alive($master) }, 10);

    unless ($gone) {
        Test::More::diag("nginx master $master ignored TERM for 10 s: KILL");
        $self->{killed} = 1;
        kill 'KILL', $master;
        wait_until(sub { !_alive($master) }, 2);
    }

    # workers of any generation that outlive their master
    my @left = grep { _alive($_) } @workers, $self->worker_pids;
    if (@left) {
        wait_until(sub { !grep { _alive($_) } @left }, 3);
        @left = grep { _alive($_) } @left;
        if (@left) {
            Test::More::diag("nginx workers @left left after stop: KILL");
            $self->{killed} = 1;
            kill 'KILL', @left;
        }
    }
}


sub error_log
{
    my ($self) = @_;
    open my $fh, '<', $self->error_log_path or return '';
    local $/;
    return <$fh> // '';
}


sub access_log
{
    my ($self) = @_;
    open my $fh, '<', $self->access_log_path or return '';
    local $/;
    return <$fh> // '';
}


# Wait (bounded) until the error log matches; returns the matching line.

sub wait_error_log
{
    my ($self, $re, $timeout) = @_;
    my $line;
    wait_until(sub {
        for (split /\n/, $self->error_log) {
            if ($_ =~ $re) { $line = $_; return 1 }
        }
        return 0;
    }, $timeout // 5);
    return $line;
}


sub check_error_log
{
    my ($self) = @_;
    my @bad;

    for my $line (split /\n/, $self->error_log) {
        next unless $line =~ /\[(alert|crit|emerg)\]/;
        next if grep { $line =~ $_ } @{ $self->{expect_log} };
        push @bad, $line;
    }

    my $tb = Test::More->builder;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $tb->ok(!@bad, "error_log of server $self->{dir} has no "
                   . "unexpected [alert]/[crit]/[emerg] lines")
        or $tb->diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);

    if ($self->{killed}) {
        $tb->ok(0, "nginx $self->{dir} stopped on TERM without KILL");
    }

    if ($ASAN_DIR) {
        my @reports = sort glob($self->_asan_log_path . '.*');
        my $text = '';
        for my $f (@reports) {
            open my $fh, '<', $f or next;
            my @l = <$fh>;
            @l = (@l[0 .. 59], "...\n") if @l > 60;
            $text .= "$f:\n" . join('', @l);
        }
        $tb->ok(!@reports, "no AddressSanitizer reports for server "
                           . "$self->{dir}") or $tb->diag($text);
    }
}


# ----- HTTP -----------------------------------------------------------------

# request(METHOD, PATH, headers => {..} or [..], body => STR, timeout => S,
#         port => N, raw => STR)
# Returns { status, headers (lowercase keys; repeated ones joined by ", "),
#           body, json (decoded body or undef) }.

sub request
{
    my ($self, $method, $path, %opt) = @_;

    my $port = $opt{port} // $self->port;
    my $timeout = $opt{timeout} // 10;

    my $req;
    if (defined $opt{raw}) {
        $req = $opt{raw};

    } else {
        my @h = ref $opt{headers} eq 'ARRAY' ? @{ $opt{headers} }
                                             : %{ $opt{headers} // {} };
        my %seen = map { lc($_) => 1 } @h[ grep { !($_ % 2) } 0 .. $#h ];

        $req = "$method $path HTTP/1.1\r\n";
        $req .= "Host: localhost\r\n" unless exists $seen{host};
        $req .= "Connection: close\r\n" unless exists $seen{connection};

        while (my ($k, $v) = splice @h, 0, 2) {
            $req .= "$k: $v\r\n";
        }

        if (defined $opt{body} && !exists $seen{'content-length'}
            && !exists $seen{'transfer-encoding'})
        {
            $req .= "Content-Length: " . length($opt{body}) . "\r\n";
        }
        $req .= "\r\n";
        $req .= $opt{body} if defined $opt{body};
    }

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout)
        or die "connect to 127.0.0.1:$port: $!";

    _write_all($s, $req, $timeout);

    my $data = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    my $res;

    while (1) {
        $res = _parse_response($data, $method eq 'HEAD');
        last if $res && $res->{complete};

        my $left = $deadline - time;
        if ($left <= 0) {
            die "request $method $path: no complete response in "
                . "$timeout s; got: " . substr($data, 0, 300) . "\n";
        }
        next unless $sel->can_read($left);
        my $n = sysread $s, $data, 65536, length $data;
        if (!$n) {
            $res = _parse_response($data, $method eq 'HEAD', 1);
            last if $res && $res->{complete};
            die "request $method $path: connection closed with an "
                . "incomplete response: " . substr($data, 0, 300) . "\n";
        }
    }

    close $s;

    $res->{json} = json_decode($res->{body});
    return $res;
}


sub _write_all
{
    my ($s, $data, $timeout) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + ($timeout // 10);
    my $off = 0;

    while ($off < length $data) {
        my $left = $deadline - time;
        die "write timed out\n" if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite $s, $data, length($data) - $off, $off;
        if (!defined $n) {
            # the server may answer and close before reading everything
            # (e.g. 413): stop writing, read the response
            return;
        }
        $off += $n;
    }
}


# Parses what has arrived; returns undef until the header is complete.

sub _parse_response
{
    my ($data, $head_only, $eof) = @_;

    # skip interim responses (100 Continue)
    my $skipped = 0;
    while ($data =~ m{^HTTP/\d\.\d 1\d\d[^\r]*\r\n(?:[^\r]+\r\n)*\r\n}) {
        $skipped += $+[0];
        $data = substr $data, $+[0];
    }

    my $i = index $data, "\r\n\r\n";
    return undef if $i < 0;

    my $head = substr $data, 0, $i;
    my $rest = substr $data, $i + 4;

    my ($line, @lines) = split /\r\n/, $head;
    my ($status) = $line =~ m{^HTTP/\d\.\d (\d{3})}
        or die "bad status line: $line\n";

    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }

    my $res = { status => $status, headers => \%h, complete => 0,
                head => $head, interim => $skipped };

    if ($head_only || $status == 204 || $status == 304) {
        $res->{body} = '';
        $res->{complete} = 1;

    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my ($body, $done) = WebhookSSE::SSE::dechunk_all($rest);
        $res->{body} = $body;
        $res->{complete} = $done;

    } elsif (defined $h{'content-length'}) {
        if (length $rest >= $h{'content-length'}) {
            $res->{body} = substr $rest, 0, $h{'content-length'};
            $res->{complete} = 1;
            $res->{consumed} = $skipped + $i + 4 + $h{'content-length'};
        }

    } elsif ($eof) {
        $res->{body} = $rest;
        $res->{complete} = 1;
    }

    return $res;
}


# publish(PATH, DATA, secret => S, headers => {..}, content_type => CT)
# DATA: a reference (encoded as JSON) or a string sent as is.

sub publish
{
    my ($self, $path, $data, %opt) = @_;

    my $body = ref $data ? json_encode($data) : $data;
    my @h = ('Content-Type' => $opt{content_type} // 'application/json');
    push @h, 'X-Webhook-Secret' => $opt{secret} if defined $opt{secret};
    push @h, %{ $opt{headers} } if $opt{headers};

    return $self->request($opt{method} // 'POST', $path, headers => \@h,
                          body => $body, port => $opt{port},
                          timeout => $opt{timeout});
}


# Publishes and dies unless the answer is 200 with a messageId.
# Returns the messageId.

sub publish_ok
{
    my ($self, $path, $data, %opt) = @_;
    my $r = $self->publish($path, $data, %opt);
    unless ($r->{status} == 200 && $r->{json} && $r->{json}{messageId}) {
        die "publish to $path failed: $r->{status} $r->{body}\n";
    }
    return $r->{json}{messageId};
}


# Many publishes pipelined on one keep-alive connection (one worker, as
# fast as nginx reads them).  Returns the responses in order.

sub publish_pipelined
{
    my ($self, $path, $list, %opt) = @_;
    my $timeout = $opt{timeout} // 20;

    my $req = '';
    for my $i (0 .. $#$list) {
        my $body = ref $list->[$i] ? json_encode($list->[$i]) : $list->[$i];
        $req .= "POST $path HTTP/1.1\r\nHost: localhost\r\n"
                . "Content-Type: application/json\r\n"
                . (defined $opt{secret}
                   ? "X-Webhook-Secret: $opt{secret}\r\n" : '')
                . ($i == $#$list ? "Connection: close\r\n" : '')
                . "Content-Length: " . length($body) . "\r\n\r\n$body";
    }

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $opt{port} // $self->port,
                                  Proto => 'tcp', Timeout => $timeout)
        or die "connect: $!";
    $s->blocking(0);

    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    my ($off, $data, @res) = (0, '');

    while (@res < @$list) {
        my $left = $deadline - time;
        die "pipelined publish: " . scalar(@res) . " of " . scalar(@$list)
            . " responses in $timeout s\n" if $left <= 0;

        my ($r, $w) = IO::Select->select($sel,
                                         $off < length $req ? $sel : undef,
                                         undef, $left);
        if ($w && @$w) {
            my $n = syswrite $s, $req, length($req) - $off, $off;
            $off += $n if defined $n;
        }
        if ($r && @$r) {
            my $n = sysread $s, $data, 65536, length $data;
            if (defined $n ? $n == 0 : !$!{EAGAIN}) {
                _parse_pipelined(\$data, \@res);
                die "pipelined publish: connection closed after "
                    . scalar(@res) . " responses\n" if @res < @$list;
            }
        }
        _parse_pipelined(\$data, \@res);
    }

    close $s;
    return @res;
}


sub _parse_pipelined
{
    my ($data, $res) = @_;

    while (my $r = _parse_response($$data, 0)) {
        last unless $r->{complete};
        die "pipelined publish: response without Content-Length\n"
            unless $r->{consumed};
        substr($$data, 0, $r->{consumed}) = '';
        $r->{json} = json_decode($r->{body});
        push @$res, $r;
    }
}


# "<epoch>-<seq>" -> (epoch, seq); () when the id has another shape.

sub id_parts
{
    my ($id) = @_;
    return () unless defined $id && $id =~ /^(\d+)-(\d+)\z/;
    return ($1, $2);
}


# Opens a stream, waits for its connected event, publishes $marker (a
# hashref) to $pub_path, and collects the events before the marker: the
# replay.  Returns { stream, connected, replay => [events], marker => id }.
# The marker must be one the stream receives (its session or a broadcast).

sub stream_replay
{
    my ($self, $path, $pub_path, $marker, %opt) = @_;

    my $s = $self->sse($path, %opt);
    die "stream $path: status $s->{status}\n" unless $s->{status} == 200;

    my ($c) = $s->wait_events(1, 5);
    die "stream $path: no connected event\n"
        unless $c && $c->{json} && ($c->{json}{type} // '') eq 'connected';

    my $id = $self->publish_ok($pub_path, $marker);
    my @ev = $s->wait_for_event($id, 5);
    die "stream $path: marker $id not received\n" unless @ev;
    pop @ev;

    return { stream => $s, connected => $c, replay => \@ev, marker => $id };
}


# Opens an SSE stream (see WebhookSSE::SSE): PATH, headers => {..},
# wait => 0 to not wait for the response header.

sub sse
{
    my ($self, $path, %opt) = @_;
    return WebhookSSE::SSE->new(port => $opt{port} // $self->port,
                                path => $path, %opt);
}


# ----- ending ---------------------------------------------------------------

sub _cleanup
{
    my ($keep) = @_;
    for my $t (@SERVERS) {
        eval { $t->stop };
    }
    return if $keep || $ENV{TEST_KEEP_SERVROOT};
    for my $t (@SERVERS) {
        remove_tree($t->{dir}) if -d $t->{dir};
    }
}


# Stops every server, checks their error logs, then done_testing.

sub finish
{
    WebhookSSE::SSE::close_all();

    for my $t (@SERVERS) {
        $t->stop;
    }
    for my $t (@SERVERS) {
        $t->check_error_log;
    }

    Test::More::done_testing(@_);
}


my $PARENT = $$;

END {
    if ($$ == $PARENT) {
        my $rc = $?;
        my $tb = Test::More->builder;
        WebhookSSE::SSE::close_all();
        _cleanup(!$tb->is_passing || $rc != 0);
        $? = $rc;
    }
}

$SIG{INT} = $SIG{TERM} = sub { die "killed by signal\n" };

1;
