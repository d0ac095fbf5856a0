#!/usr/bin/env bash
# make test-deb: the Debian package as a user gets it (after `make deb`).
#
#  1. its control fields: Depends names the nginx-abi the installed nginx
#     Provides, and a package for every library the .so links;
#  2. util/build.sh against a named nginx source tree (NGINX_SRC, here the
#     one of nginx-dev configured --with-compat only) gives a .so the
#     packaged nginx loads;
#  3. `apt-get install ./<deb>` into this machine's nginx: nginx's reload
#     trigger processed, the system nginx neither started nor stopped, the
#     files, the modules-enabled link, `nginx -t` of the stock
#     /etc/nginx/nginx.conf with the conf.d example of docs/install.md (on
#     a free loopback port, with a secret file of its own);
#  4. that installed nginx and module, started by this script (not the
#     system service: its own -c file including modules-enabled/*.conf and
#     the conf.d file, so the default site's port 80 plays no part): the
#     version notice, webhook_status, a publish without the secret refused,
#     one with it reaching a stream (curl); then stopped by its pid;
#  5. `apt-get purge`: the trigger again, the system nginx as it was,
#     nothing of the package left, `nginx -t` passes.
#
# Needs root.  Whatever happens, the exit trap stops that nginx and the
# curl stream, removes the conf.d file and purges the package.  Logs stay
# in build/deb/test/.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
pkg=libnginx-mod-http-webhook-sse
so=ngx_http_webhook_sse_module.so
version=$(cat "$repo/VERSION")
arch=$(dpkg --print-architecture)
deb=$repo/build/deb/${pkg}_${version}_${arch}.deb
work=$repo/build/deb/test
confd=/etc/nginx/conf.d/webhook-sse-test-deb.conf
enabled=/etc/nginx/modules-enabled/50-mod-http-webhook-sse.conf
available=/usr/share/nginx/modules-available/mod-http-webhook-sse.conf
doc=/usr/share/doc/$pkg

apt=(apt-get -y -q -o DPkg::Lock::Timeout=600)
export DEBIAN_FRONTEND=noninteractive

n=0
ok()   { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*" >&2; exit 1; }

# wait_for SECONDS COMMAND..: poll until COMMAND succeeds, bounded
wait_for()
{
    local limit=$(( $(date +%s) + $1 ))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$limit" ] || return 1
        sleep 0.1
    done
}

if [ "$(id -u)" != 0 ]; then
    echo "test-deb: must run as root (apt-get install, /etc/nginx)" >&2
    exit 1
fi

if [ ! -f "$deb" ]; then
    echo "test-deb: $deb not found; run 'make deb'" >&2
    exit 1
fi

rm -rf "$work"
mkdir -p "$work"

nginx_pid=
stream_pid=
installed=

cleanup()
{
    local rc=$?

    if [ -n "$stream_pid" ]; then
        kill "$stream_pid" 2> /dev/null || true
        wait "$stream_pid" 2> /dev/null || true
    fi

    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2> /dev/null; then
        kill -TERM "$nginx_pid" 2> /dev/null || true
        wait_for 10 eval '! kill -0 '"$nginx_pid"' 2> /dev/null' \
            || kill -KILL "$nginx_pid" 2> /dev/null || true
    fi

    rm -f "$confd"

    if [ -n "$installed" ]; then
        "${apt[@]}" purge "$pkg" > "$work/purge-cleanup.log" 2>&1 || true
    fi

    if [ "$rc" != 0 ]; then
        echo "test-deb: FAIL (logs in $work)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- 1. the package's fields

depends=$(dpkg-deb --field "$deb" Depends)
provides=$(dpkg-query -W -f='${Provides}' nginx)
abi=$(tr ',' '\n' <<< "$provides" | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p')

[ -n "$abi" ] || fail "the installed nginx provides an nginx-abi ($provides)"

case ", $depends," in
    *", $abi,"*) ok "Depends: $abi, as the installed nginx Provides" ;;
    *) fail "Depends ($depends) names $abi" ;;
esac

[ "$(dpkg-deb --field "$deb" Version)" = "$version" ] \
    && ok "Version: $version (VERSION)" \
    || fail "Version is $version"

mkdir -p "$work/deb"
dpkg-deb -x "$deb" "$work/deb"
for lib in $(readelf -d "$work/deb/usr/lib/nginx/modules/$so" \
                 | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !p { p = $NF } END { print p }')
    real=$(readlink -f "$path")
    owner=
    # dpkg knows a file by the path its package ships (/lib or /usr/lib)
    for p in "$path" "$real" "${path#/usr}" "${real#/usr}" \
             "/usr${path#/usr}" "/usr${real#/usr}"
    do
        owner=$(dpkg -S "$p" 2> /dev/null | sed -n '1s/:.*//p') || true
        [ -z "$owner" ] || break
    done
    [ -n "$owner" ] || fail "$lib: no package owns it"
    case ", $depends" in
        *", $owner "*|*", $owner,"*|*", $owner") ok "Depends: $owner ($lib)" ;;
        *) fail "Depends ($depends) names $owner, which has $lib" ;;
    esac
done

# ---- 2. util/build.sh against a named source tree (--with-compat only)

NGINX_SRC=/usr/share/nginx/src WEBHOOK_SSE_BUILDDIR=$work/nginx-src \
    "$repo/util/build.sh" > "$work/nginx-src.log" 2>&1 \
    || { cat "$work/nginx-src.log" >&2; fail "NGINX_SRC build"; }
grep -q -- "--with-compat" "$work/nginx-src/.configured" \
    || fail "NGINX_SRC build configured --with-compat"
printf 'load_module %s;\nevents {}\n' "$work/nginx-src/$so" \
    > "$work/nginx-src/load.conf"
/usr/sbin/nginx -q -t -c "$work/nginx-src/load.conf" \
        -g "error_log $work/nginx-src/error.log; pid $work/nginx-src/pid;" \
    && ok "NGINX_SRC build: the packaged nginx loads the module" \
    || fail "NGINX_SRC build: the packaged nginx loads the module"

# ---- 3. install

/usr/sbin/nginx -q -t > "$work/nginx-t-before.log" 2>&1 \
    || { cat "$work/nginx-t-before.log" >&2;
         fail "nginx -t passes before the install (this machine's config)"; }

if dpkg-query -W -f='${Status}' "$pkg" 2> /dev/null | grep -q installed
then
    echo "# $pkg was installed already: reinstalled, purged at the end"
fi

# the system service's state (Debian's /run/nginx.pid): the package's
# scripts reload nginx through nginx's trigger, which does so only when it
# runs; they never start or stop it
system_nginx()
{
    local pid
    pid=$(cat /run/nginx.pid 2> /dev/null) || true
    if [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; then
        echo "running (master $pid)"
    else
        echo "stopped"
    fi
}
system_before=$(system_nginx)

installed=1
"${apt[@]}" install "$deb" > "$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; fail "apt-get install $deb"; }
ok "apt-get install ./$(basename "$deb")"

grep -q "^Processing triggers for nginx " "$work/install.log" \
    && ok "install: nginx's reload trigger processed" \
    || fail "install: nginx's reload trigger processed"
[ "$(system_nginx)" = "$system_before" ] \
    && ok "install: system nginx still $system_before" \
    || fail "install: system nginx $system_before, now $(system_nginx)"

[ "$(dpkg-query -W -f='${Version}' "$pkg")" = "$version" ] \
    && ok "dpkg: $pkg $version installed" || fail "dpkg: $pkg $version"

files=$(dpkg -L "$pkg")
for f in "/usr/lib/nginx/modules/$so" "$available" "$doc/copyright" \
         "$doc/README.md.gz" "$doc/directives.md.gz" \
         "$doc/examples/nginx.conf" "$doc/examples/secure.conf"
do
    grep -qx "$f" <<< "$files" && [ -e "$f" ] \
        || fail "installed: $f"
done
ok "installed: the module, its load file, docs, examples, copyright"

[ -L "$enabled" ] && [ "$(readlink "$enabled")" = "$available" ] \
    && ok "enabled: $enabled -> $available" \
    || fail "enabled: $enabled -> $available"

grep -qx "load_module modules/$so;" "$available" \
    && ok "$available loads modules/$so" || fail "$available content"

port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0",
                                 ReuseAddr => 1)->sockport')

# the conf.d file of docs/install.md, on the free port, with a secret file
# of the test's own
secret=test-deb-$$-$RANDOM
echo "$secret" > "$work/secret"
chmod 600 "$work/secret"
perl -0ne 'print $1 if m{```nginx\n(# /etc/nginx/conf\.d/webhook\.conf\n.*?)```}s' \
    "$repo/docs/install.md" > "$work/webhook.conf"
grep -q "listen 127.0.0.1:8080;" "$work/webhook.conf" \
    && grep -q "file=/etc/nginx/webhook-secret;" "$work/webhook.conf" \
    || fail "docs/install.md: the conf.d example (port 8080, secret file)"
{
    echo "# written by nginx-webhook-sse's util/test-deb.sh, removed at its end"
    sed -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$port;|" \
        -e "s|file=/etc/nginx/webhook-secret;|file=$work/secret;|" \
        "$work/webhook.conf"
} > "$confd"

/usr/sbin/nginx -t > "$work/nginx-t.log" 2>&1 \
    || { cat "$work/nginx-t.log" >&2;
         fail "nginx -t: stock nginx.conf with $confd"; }
ok "nginx -t: stock /etc/nginx/nginx.conf with $confd"

# ---- 4. run it

mkdir -p "$work/run"
cat > "$work/run/nginx.conf" <<EOF
# the stock main part: the enabled modules, then only the test's server
include /etc/nginx/modules-enabled/*.conf;

worker_processes 2;
pid $work/run/nginx.pid;
error_log $work/run/error.log info;

events {
    worker_connections 256;
}

http {
    access_log $work/run/access.log;
    client_body_temp_path $work/run/body;
    proxy_temp_path $work/run/proxy;
    fastcgi_temp_path $work/run/fastcgi;
    uwsgi_temp_path $work/run/uwsgi;
    scgi_temp_path $work/run/scgi;

    include $confd;
}
EOF

/usr/sbin/nginx -c "$work/run/nginx.conf" > "$work/run/start.log" 2>&1 \
    || { cat "$work/run/start.log" "$work/run/error.log" >&2;
         fail "the installed nginx starts with the module"; }

wait_for 15 test -s "$work/run/nginx.pid" \
    || fail "nginx wrote $work/run/nginx.pid"
nginx_pid=$(cat "$work/run/nginx.pid")

base=http://127.0.0.1:$port
health() { curl -sf --max-time 5 "$base/api/webhook" > /dev/null; }
wait_for 15 health || fail "nginx answers on 127.0.0.1:$port"
ok "the installed nginx runs with the module (pid $nginx_pid, port $port)"

notice="webhook-sse/$version (built for nginx/"
# logged before nginx daemonizes, by the master's parent: any pid
perl -ne 'BEGIN { $v = shift } $f = 1
          if m{\[notice\] \d+#\d+: webhook-sse/\Q$v\E \(built for nginx/[\d.]+\)$};
          END { exit !$f }' "$version" "$work/run/error.log" \
    && ok "error_log: $notice...)" || fail "error_log: $notice...)"

st=$(curl -sf --max-time 5 "$base/webhook-status")
grep -qF "\"version\":\"$version\"" <<< "$st" \
    && ok "webhook_status: version $version" \
    || fail "webhook_status: version $version ($st)"

: > "$work/stream.out"
curl -sN --max-time 60 "$base/api/webhook/stream?sessionId=deb" \
    > "$work/stream.out" 2> "$work/stream.err" &
stream_pid=$!

wait_for 15 grep -qF '"type":"connected","sessionId":"deb"' \
        "$work/stream.out" \
    && ok "stream: connected" || fail "stream: connected"

denied=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
              -H 'Content-Type: application/json' -d '{"message":"x"}' \
              "$base/api/webhook")
[ "$denied" = 401 ] && ok "publish without the secret: 401" \
    || fail "publish without the secret: 401 (got $denied)"

answer=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' \
              -H "X-Webhook-Secret: $secret" \
              -d '{"message":"hello from the package","sessionId":"deb"}' \
              "$base/api/webhook")
id=$(sed -n 's/.*"success":true,"messageId":"\([0-9-]*\)".*/\1/p' \
         <<< "$answer")
[ -n "$id" ] && ok "publish: $answer" || fail "publish: $answer"

wait_for 15 grep -qxF "id: $id" "$work/stream.out" \
    && grep -qF '"message":"hello from the package","sessionId":"deb"' \
            "$work/stream.out" \
    && ok "stream: got message $id" || fail "stream: got message $id"

kill "$stream_pid"
wait "$stream_pid" 2> /dev/null || true
stream_pid=

kill -QUIT "$nginx_pid"
wait_for 15 eval '! kill -0 '"$nginx_pid"' 2> /dev/null' \
    && ok "nginx stopped (QUIT to $nginx_pid)" || fail "nginx stops on QUIT"
nginx_pid=

if grep -E '\[(alert|crit|emerg)\]' "$work/run/error.log"; then
    fail "error_log: no alert, crit or emerg"
fi
ok "error_log: no alert, crit or emerg"

# ---- 5. purge

rm -f "$confd"
"${apt[@]}" purge "$pkg" > "$work/purge.log" 2>&1 \
    || { cat "$work/purge.log" >&2; fail "apt-get purge $pkg"; }
installed=

grep -q "^Processing triggers for nginx " "$work/purge.log" \
    && ok "purge: nginx's reload trigger processed" \
    || fail "purge: nginx's reload trigger processed"
[ "$(system_nginx)" = "$system_before" ] \
    && ok "purge: system nginx still $system_before" \
    || fail "purge: system nginx $system_before, now $(system_nginx)"

! dpkg -L "$pkg" > /dev/null 2>&1 && ok "purged: dpkg -L $pkg fails" \
    || fail "purged: dpkg -L $pkg fails"

for f in "$enabled" "$enabled.removed" "$available" \
         "/usr/lib/nginx/modules/$so" "$doc"
do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "purged: $f is gone"
done
ok "purged: module, load file, modules-enabled link, docs gone"

/usr/sbin/nginx -q -t > "$work/nginx-t-after.log" 2>&1 \
    && ok "nginx -t passes after the purge" \
    || { cat "$work/nginx-t-after.log" >&2;
         fail "nginx -t passes after the purge"; }

echo "test-deb: PASS ($n checks)"
