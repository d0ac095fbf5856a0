#!/usr/bin/env bash
# make deb: builds build/deb/libnginx-mod-http-webhook-sse_<version>_<arch>.deb
# with dpkg-buildpackage from debian/, for the nginx installed on this
# machine (nginx-dev), then runs lintian on it (fails on errors).
#
# The tree is copied to build/deb/src first (the files git knows, tracked
# or not ignored; without git, all but build/ and run/), so the build
# leaves nothing in the checkout and dpkg-buildpackage's output lands in
# build/deb/.  debian/changelog is written there from VERSION: the one
# place the version comes from.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/build/deb
stage=$out/src
pkg=libnginx-mod-http-webhook-sse

version=$(cat "$repo/VERSION")
case $version in
    ""|*[!0-9A-Za-z.+~-]*|[!0-9]*)
        echo "deb: VERSION: bad version \"$version\"" >&2
        exit 1
        ;;
esac

rm -rf "$out"
mkdir -p "$stage"

if git -C "$repo" rev-parse --git-dir > /dev/null 2>&1; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
         | while IFS= read -r -d '' f; do
               [ -e "$f" ] && printf '%s\0' "$f"
           done \
         | tar --null -T - -cf -) | tar -xf - -C "$stage"
    rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
    when=$(git -C "$repo" log -1 --format=%cD 2>/dev/null || date -R)
else
    (cd "$repo" && tar --exclude=./build --exclude=./run \
         --exclude='./t/servroot*' --exclude=node_modules -cf - .) \
        | tar -xf - -C "$stage"
    rev=unknown
    when=$(date -R)
fi

maintainer=$(sed -n 's/^Maintainer: //p' "$repo/debian/control")

cat > "$stage/debian/changelog" <<EOF
$pkg ($version) unstable; urgency=medium

  * nginx-webhook-sse $version (VERSION), built from $rev.

 -- $maintainer  $when
EOF

root=()
if [ "$(id -u)" != 0 ]; then
    root=(--root-command=fakeroot)
fi

echo "deb: dpkg-buildpackage in $stage (log: $out/build.log)"
if ! (cd "$stage" && dpkg-buildpackage -b --no-sign "${root[@]}") \
        > "$out/build.log" 2>&1
then
    tail -40 "$out/build.log" >&2
    echo "deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
    exit 1
fi

arch=$(dpkg --print-architecture)
deb=$out/${pkg}_${version}_${arch}.deb

if [ ! -f "$deb" ]; then
    echo "deb: $deb was not built" >&2
    exit 1
fi

echo "deb: $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends

# errors fail the build; each warning is explained in docs/install.md
echo "deb: lintian"
lintian --fail-on error --tag-display-limit 0 "$deb" | tee "$out/lintian.log"
