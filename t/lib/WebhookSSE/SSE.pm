package WebhookSSE::SSE;

# A server-sent events client for the tests: opens a GET stream over a raw
# socket (or reads a command's output, e.g. curl -i -N --http2-prior-knowledge),
# parses the response header, removes chunked framing, and parses SSE
# incrementally (lines end in LF, CR or CRLF; fields id, data, event, retry;
# comments).  Every wait is bounded and uses IO::Select; many streams can be
# open and pumped together.
#
#     my $s = WebhookSSE::SSE->new(port => $port, path => '/stream?sessionId=a',
#                                  headers => { 'Last-Event-ID' => $id });
#     $s->{status}, $s->{headers}{'content-type'}
#     my @ev = $s->wait_events(2, 5);   # each { id, last_id, event, data, json }
#     my $c  = $s->wait_comment(5);     # "heartbeat"
#     $s->is_closed(3);                 # true once the server ended the stream
#     $s->abort;                        # RST, no FIN handshake

use strict;
use warnings;

use Compress::Raw::Zlib ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER SO_RCVBUF);
use Time::HiRes qw(time);

my $JSON = JSON::PP->new->utf8->allow_nonref;

my @OPEN;


# new(port => P, path => PATH, headers => {..}|[..], wait => 1, timeout => 5,
#     rcvbuf => BYTES)  or  new(cmd => [argv..], ...)

sub new
{
    my ($class, %opt) = @_;

    my $self = bless {
        path      => $opt{path},
        buf       => '',      # raw bytes not yet consumed by the http parser
        state     => 'head',
        status    => undef,
        headers   => {},
        body_raw  => '',      # de-chunked body
        sse_buf   => '',      # body text not yet split into lines
        block     => {},
        last_id   => undef,
        events    => [],
        next      => 0,
        comments  => [],
        next_comment => 0,
        retry     => [],
        lines     => [],
        closed    => 0,       # peer ended the stream (EOF or last chunk)
        eof       => 0,
    }, $class;

    if ($opt{cmd}) {
        my $pid = open my $fh, '-|', @{ $opt{cmd} }
            or die "cannot run @{ $opt{cmd} }: $!";
        $self->{fh} = $fh;
        $self->{cmd_pid} = $pid;
        # curl -i prints the header but writes the body already decoded
        $self->{decoded} = 1;

    } else {
        my $s = IO::Socket::INET->new(Proto => 'tcp')
            or die "socket: $!";
        if ($opt{rcvbuf}) {
            setsockopt $s, SOL_SOCKET, SO_RCVBUF, $opt{rcvbuf};
        }
        my $addr = Socket::pack_sockaddr_in($opt{port},
                                            Socket::inet_aton('127.0.0.1'));
        connect $s, $addr or die "connect 127.0.0.1:$opt{port}: $!";
        $self->{fh} = $s;

        my @h = ref $opt{headers} eq 'ARRAY' ? @{ $opt{headers} }
                                             : %{ $opt{headers} // {} };
        my $req = ($opt{method} // 'GET') . " $opt{path} HTTP/1.1\r\n"
                  . "Host: localhost\r\n";
        $req .= "Accept: text/event-stream\r\n"
            unless grep { lc $_ eq 'accept' } @h;
        while (my ($k, $v) = splice @h, 0, 2) {
            $req .= "$k: $v\r\n";
        }
        $req .= "\r\n";

        my $off = 0;
        while ($off < length $req) {
            my $n = syswrite $s, $req, length($req) - $off, $off;
            die "write request: $!" unless defined $n;
            $off += $n;
        }
    }

    push @OPEN, $self;

    if ($opt{wait} // 1) {
        $self->wait_headers($opt{timeout} // 5)
            or die "stream $opt{path}: no response header within "
                   . ($opt{timeout} // 5) . " s\n";
    }

    return $self;
}


sub fh { $_[0]{fh} }

sub status { $_[0]{status} }

sub headers { $_[0]{headers} }

sub body { $_[0]{body_raw} }

sub json { my $v = eval { $JSON->decode($_[0]{body_raw}) }; $v }


# Reads what is available, waiting at most $timeout for the first byte.
# Returns the number of bytes read (0 at EOF or timeout).

sub pump
{
    my ($self, $timeout) = @_;
    return 0 unless $self->{fh};

    my $sel = IO::Select->new($self->{fh});
    return 0 unless $sel->can_read($timeout // 0);
    return $self->_read;
}


sub _read
{
    my ($self) = @_;
    my $data;
    my $n = sysread $self->{fh}, $data, 65536;

    if (!$n) {
        $self->{eof} = 1;
        $self->{closed} = 1;
        $self->_feed('', 1);
        $self->_close_fh;
        return 0;
    }

    $self->_feed($data, 0);
    return $n;
}


# Pump several streams at once: returns after data arrived on any of them
# or after $timeout.

sub pump_many
{
    my ($list, $timeout) = @_;
    my %by_fh;
    for my $c (@$list) {
        $by_fh{ fileno $c->{fh} } = $c if $c->{fh};
    }
    return 0 unless %by_fh;

    my $sel = IO::Select->new(map { $_->{fh} } values %by_fh);
    my @ready = $sel->can_read($timeout // 0);
    for my $fh (@ready) {
        my $c = $by_fh{ fileno $fh } or next;
        $c->_read;
    }
    return scalar @ready;
}


# Wait until $cond->() is true for every stream (or $timeout).

sub wait_all
{
    my ($list, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5);

    while (1) {
        my @pending = grep { !$cond->($_) } @$list;
        return 1 unless @pending;
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my @open = grep { $_->{fh} } @pending;
        # streams that closed can never satisfy a condition they fail now
        return 0 unless @open;
        pump_many(\@open, $left);
    }
}


sub _wait
{
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5);

    while (1) {
        return 1 if $cond->();
        return 0 if !$self->{fh};
        my $left = $deadline - time;
        return 0 if $left <= 0;
        $self->pump($left);
    }
}


sub wait_headers
{
    my ($self, $timeout) = @_;
    return $self->_wait(sub { defined $self->{status} }, $timeout);
}


# For non-200 answers: wait until the whole body has arrived.

sub wait_response
{
    my ($self, $timeout) = @_;
    $self->_wait(sub { $self->{complete} || $self->{closed} }, $timeout);
    return $self;
}


# Returns up to $n unconsumed events, waiting at most $timeout for them.

sub wait_events
{
    my ($self, $n, $timeout) = @_;
    $self->_wait(sub { @{ $self->{events} } - $self->{next} >= $n },
                 $timeout);
    my $avail = @{ $self->{events} } - $self->{next};
    $n = $avail if $avail < $n;
    my @ev = @{ $self->{events} }[ $self->{next} .. $self->{next} + $n - 1 ];
    $self->{next} += $n;
    return @ev;
}


# Unconsumed events already received (no waiting).

sub pending_events
{
    my ($self) = @_;
    return @{ $self->{events} } - $self->{next};
}


# Reads events until one satisfies $match (a code ref, or a messageId
# string); returns all events read up to and including it, or () on timeout
# (the events stay consumed either way).

sub wait_for_event
{
    my ($self, $match, $timeout) = @_;
    my $m = ref $match ? $match
                       : sub { (($_[0]{json} // {})->{messageId} // '')
                               eq $match };
    my $deadline = time + ($timeout // 5);
    my @seen;

    while (1) {
        while ($self->{next} < @{ $self->{events} }) {
            my $e = $self->{events}[ $self->{next}++ ];
            push @seen, $e;
            return @seen if $m->($e);
        }
        my $left = $deadline - time;
        return () if $left <= 0 || !$self->{fh};
        $self->pump($left);
    }
}


# Next unconsumed comment line (text after ':', one leading space dropped).

sub wait_comment
{
    my ($self, $timeout) = @_;
    $self->_wait(sub { @{ $self->{comments} } > $self->{next_comment} },
                 $timeout);
    return undef unless @{ $self->{comments} } > $self->{next_comment};
    return $self->{comments}[ $self->{next_comment}++ ];
}


# True once the server ended the stream (waits at most $timeout).

sub is_closed
{
    my ($self, $timeout) = @_;
    return $self->_wait(sub { $self->{closed} }, $timeout);
}


# Abrupt close: RST instead of the FIN handshake.

sub abort
{
    my ($self) = @_;
    if ($self->{fh} && !$self->{cmd_pid}) {
        setsockopt $self->{fh}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0);
    }
    $self->_close_fh;
}


sub close
{
    my ($self) = @_;
    $self->_close_fh;
}


sub _close_fh
{
    my ($self) = @_;
    if ($self->{cmd_pid}) {
        kill 'TERM', $self->{cmd_pid};
        waitpid $self->{cmd_pid}, 0;
        delete $self->{cmd_pid};
    }
    if ($self->{fh}) {
        CORE::close $self->{fh};
        delete $self->{fh};
    }
    @OPEN = grep { $_ != $self } @OPEN;
}


sub close_all
{
    for my $c (@OPEN) {
        $c->_close_fh if $c;
    }
    @OPEN = ();
}


# ----- parsing --------------------------------------------------------------

sub _feed
{
    my ($self, $data, $eof) = @_;

    $self->{buf} .= $data;

    if ($self->{state} eq 'head') {
        my $i = index $self->{buf}, "\r\n\r\n";
        return if $i < 0;

        my $head = substr $self->{buf}, 0, $i;
        substr($self->{buf}, 0, $i + 4) = '';

        my ($line, @lines) = split /\r\n/, $head;
        ($self->{status}) = $line =~ m{^HTTP/[\d.]+ (\d{3})};
        $self->{status} //= 0;
        $self->{head} = $head;

        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $k = lc $k;
            $self->{headers}{$k} = exists $self->{headers}{$k}
                                   ? "$self->{headers}{$k}, $v" : $v;
        }

        my $h = $self->{headers};
        if ($self->{decoded}) {
            $self->{state} = 'raw';
        } elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
            $self->{state} = 'chunked';
            $self->{chunk_left} = undef;
        } elsif (defined $h->{'content-length'}) {
            $self->{state} = 'length';
            $self->{length_left} = $h->{'content-length'};
        } else {
            $self->{state} = 'raw';
        }
    }

    my $body = '';

    if ($self->{state} eq 'raw') {
        $body = $self->{buf};
        $self->{buf} = '';
        $self->{complete} = 1 if $eof;

    } elsif ($self->{state} eq 'length') {
        my $n = length $self->{buf};
        $n = $self->{length_left} if $n > $self->{length_left};
        $body = substr $self->{buf}, 0, $n, '';
        $self->{length_left} -= $n;
        if ($self->{length_left} == 0) {
            $self->{complete} = 1;
            $self->{closed} = 1;
        }

    } elsif ($self->{state} eq 'chunked') {
        $body = $self->_dechunk;
    }

    $self->{body_raw} .= $body;

    if (!$self->{decoded}
        && ($self->{headers}{'content-encoding'} // '') =~ /gzip/i)
    {
        $self->{inflate} //= Compress::Raw::Zlib::Inflate->new(
            -WindowBits => Compress::Raw::Zlib::WANT_GZIP());
        my $out = '';
        my $in = $body;
        my $st = $self->{inflate}->inflate($in, $out);
        die "gzip stream: $st\n"
            if $st != Compress::Raw::Zlib::Z_OK()
               && $st != Compress::Raw::Zlib::Z_STREAM_END()
               && $st != Compress::Raw::Zlib::Z_BUF_ERROR();
        $body = $out;
        $self->{gzip_bytes} += length $out;
    }

    $self->_parse_sse($body, $eof || $self->{closed});
}


sub _dechunk
{
    my ($self) = @_;
    my $out = '';

    while (1) {
        if (!defined $self->{chunk_left}) {
            my $i = index $self->{buf}, "\r\n";
            return $out if $i < 0;
            my $line = substr $self->{buf}, 0, $i;
            substr($self->{buf}, 0, $i + 2) = '';
            my ($hex) = $line =~ /^([0-9a-fA-F]+)/;
            die "bad chunk size line: '$line'\n" unless defined $hex;
            my $size = hex $hex;
            if ($size == 0) {
                $self->{state} = 'done';
                $self->{complete} = 1;
                $self->{closed} = 1;
                return $out;
            }
            $self->{chunk_left} = $size;
        }

        if ($self->{chunk_left} > 0) {
            my $n = length $self->{buf};
            return $out if $n == 0;
            $n = $self->{chunk_left} if $n > $self->{chunk_left};
            $out .= substr $self->{buf}, 0, $n, '';
            $self->{chunk_left} -= $n;
        }

        if ($self->{chunk_left} == 0) {
            return $out if length $self->{buf} < 2;
            my $crlf = substr $self->{buf}, 0, 2, '';
            die "chunk not followed by CRLF\n" unless $crlf eq "\r\n";
            $self->{chunk_left} = undef;
        }
    }
}


# Whole-buffer de-chunking for the plain HTTP client: (body, complete).

sub dechunk_all
{
    my ($data) = @_;
    my $out = '';

    while (1) {
        my $i = index $data, "\r\n";
        return ($out, 0) if $i < 0;
        my ($hex) = substr($data, 0, $i) =~ /^([0-9a-fA-F]+)/;
        return ($out, 0) unless defined $hex;
        my $size = hex $hex;
        return ($out, 1) if $size == 0;
        return ($out, 0) if length($data) < $i + 2 + $size + 2;
        $out .= substr $data, $i + 2, $size;
        $data = substr $data, $i + 2 + $size + 2;
    }
}


sub _parse_sse
{
    my ($self, $text, $eof) = @_;

    return unless ($self->{status} // 0) == 200;

    $self->{sse_buf} .= $text;

    while (1) {
        my $buf = \$self->{sse_buf};
        last unless $$buf =~ /[\r\n]/g;
        my $p = pos($$buf) - 1;
        pos($$buf) = undef;

        my $term = 1;
        if (substr($$buf, $p, 1) eq "\r") {
            if ($p + 1 < length $$buf) {
                $term = 2 if substr($$buf, $p + 1, 1) eq "\n";
            } elsif (!$eof) {
                last;     # CR at the end: LF may follow in the next read
            }
        }

        my $line = substr $$buf, 0, $p;
        substr($$buf, 0, $p + $term) = '';
        $self->_line($line);
    }
}


sub _line
{
    my ($self, $line) = @_;
    my $b = $self->{block};

    push @{ $self->{lines} }, $line;

    if ($line eq '') {
        if (defined $b->{data}) {
            my $data = $b->{data};
            $data =~ s/\n\z//;
            push @{ $self->{events} }, {
                id      => $b->{id},
                last_id => $self->{last_id},
                event   => $b->{event} // 'message',
                data    => $data,
                json    => scalar eval { $JSON->decode($data) },
                fields  => $b->{fields},
            };
        }
        $self->{block} = {};
        return;
    }

    if ($line =~ /^:(.*)\z/s) {
        my $c = $1;
        $c =~ s/^ //;
        push @{ $self->{comments} }, $c;
        return;
    }

    my ($field, $value) = $line =~ /^([^:]*)(?::(.*))?\z/s;
    $value //= '';
    $value =~ s/^ //;

    push @{ $b->{fields} }, [ $field, $value ];

    if ($field eq 'data') {
        $b->{data} .= "$value\n";

    } elsif ($field eq 'id') {
        if ($value !~ /\0/) {
            $b->{id} = $value;
            $self->{last_id} = $value;
        }

    } elsif ($field eq 'event') {
        $b->{event} = $value;

    } elsif ($field eq 'retry') {
        push @{ $self->{retry} }, $value if $value =~ /^\d+\z/;

    } else {
        push @{ $self->{unknown} }, $line;
    }
}


sub DESTROY
{
    my ($self) = @_;
    local ($., $@, $!, $^E, $?);
    if ($self->{cmd_pid}) {
        kill 'TERM', $self->{cmd_pid};
        waitpid $self->{cmd_pid}, 0;
    }
}

1;
