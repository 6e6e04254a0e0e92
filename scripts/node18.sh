#!/usr/bin/env bash
# Debian 12's own Node 18 (what Raspberry Pi OS bookworm ships), unpacked into a cache folder
# without installing it, so that the tests can run the bundles under the oldest Node they target.
# Prints the path of a `node` that runs it (a small wrapper). Idempotent: a working cache is reused.
#
#   scripts/node18.sh            # → /path/to/repo/.cache/node18/bin/node
#   APIKEYD_NODE18_CACHE=/dir    # another cache folder
#
# Needs apt-get, dpkg-deb and Debian 12's package lists (as root it runs `apt-get update` itself
# when the lists lack the packages or name versions the mirror no longer has).
#
# How Debian's node is put together, and what this does about it:
#  - nodejs holds a small /usr/bin/node; libnode108 holds the rest (libnode.so.108). Both are
#    unpacked with `dpkg -x` into <cache>/root. The shared libraries libnode108 depends on are
#    taken from the system, except those not installed here (typically libc-ares2), which are
#    unpacked too; the wrapper puts <cache>/root/usr/lib/<arch> on LD_LIBRARY_PATH.
#  - Debian builds node with some of its bundled JavaScript taken from other packages
#    (node-acorn, node-cjs-module-lexer, node-undici). Their paths are compiled into libnode.so
#    as absolute paths (/usr/share/nodejs/acorn/dist/acorn.js, ...) and read when node starts
#    ("Cannot load externalized builtin" and an abort if missing); NODE_PATH plays no part. Rather
#    than writing to /usr/share/nodejs, the cached copy of libnode.so has every
#    "/usr/share/nodejs" replaced by the string of the same length "/proc/self/fd/87/", and the
#    wrapper opens <cache>/root/usr/share/nodejs as file descriptor 87 before starting node:
#    the paths then resolve inside the unpacked tree, and nothing outside the cache is touched.
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${APIKEYD_NODE18_CACHE:-$ROOT_DIR/.cache/node18}
NODE=$CACHE/bin/node
FD=87
PREFIX=/usr/share/nodejs
SUBSTITUTE=/proc/self/fd/$FD/ # the same length as $PREFIX
PACKAGE=libnode108            # Debian 12's Node 18 (Debian 13 has Node 20, libnode115)

say() { printf 'node18: %s\n' "$*" >&2; }

# Works: starts (it reads the externalized builtins then), is v18, and has fetch (undici's builtin).
works() {
  [ -x "$NODE" ] || return 1
  local out
  out=$("$NODE" -e 'process.stdout.write(`${process.version} ${typeof fetch}`)' 2>/dev/null) || return 1
  [[ "$out" == "v18."*" function" ]]
}

if works; then
  echo "$NODE"
  exit 0
fi

mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9 # another run may be unpacking: wait for it, then use its result
if works; then
  echo "$NODE"
  exit 0
fi

[ "${#SUBSTITUTE}" -eq "${#PREFIX}" ] || { say "internal: '$SUBSTITUTE' is not as long as '$PREFIX'"; exit 1; }
for tool in apt-get apt-cache dpkg-deb dpkg-query perl ldd; do
  command -v "$tool" >/dev/null || { say "needs $tool (Debian 12 or Raspberry Pi OS bookworm)"; exit 1; }
done

WORK=$(mktemp -d "$CACHE.new.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/debs" "$WORK/root" "$WORK/bin"

APT_OPTS=()
[ "$(id -u)" -eq 0 ] && APT_OPTS=(-o APT::Sandbox::User=root) # downloads into a folder _apt cannot write
UPDATED=false

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }

update_lists() {
  if [ "$UPDATED" = true ] || [ "$(id -u)" -ne 0 ]; then return 1; fi
  say "apt-get update"
  apt-get update -qq >&2
  UPDATED=true
}

download() {
  (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" download -q "$@" >&2) && return 0
  update_lists || { say "apt-get download $* failed (as root, this runs apt-get update first)"; return 1; }
  (cd "$WORK/debs" && apt-get "${APT_OPTS[@]}" download -q "$@" >&2)
}

VERSION=$(candidate "$PACKAGE")
if [ -z "$VERSION" ] || [ "$VERSION" = "(none)" ]; then
  update_lists || true
  VERSION=$(candidate "$PACKAGE")
fi
if [ -z "$VERSION" ] || [ "$VERSION" = "(none)" ]; then
  say "apt knows no $PACKAGE: needs Debian 12 (bookworm) package lists; as root, run apt-get update"
  exit 1
fi

say "downloading nodejs and $PACKAGE $VERSION and the builtins Debian's build takes from other packages"
download "nodejs=$VERSION" "$PACKAGE=$VERSION" node-acorn node-cjs-module-lexer node-undici
VERSION=$(dpkg-deb -f "$WORK/debs/${PACKAGE}_"*.deb Version) # what was fetched, after any update

# The shared libraries libnode depends on: the system's where installed, else unpacked too.
missing=()
depends=$(dpkg-deb -f "$WORK/debs/${PACKAGE}_"*.deb Depends)
IFS=',' read -ra alternatives <<<"$depends"
for entry in "${alternatives[@]}"; do
  name=$(sed -E 's/^ *//; s/[ (|].*//' <<<"$entry")
  case "$name" in
    node-*) continue ;; # downloaded above, always: they must match the paths compiled in
  esac
  status=$(dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$name")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "not installed here, unpacked too: ${missing[*]}"
  download "${missing[@]}"
fi

for deb in "$WORK/debs"/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done

LIB=$(find "$WORK/root/usr/lib" -name "libnode.so.*" -print -quit)
[ -n "$LIB" ] || { say "no libnode.so in $PACKAGE"; exit 1; }
LIBDIR=${LIB#"$WORK/root/"}
LIBDIR=${LIBDIR%/*}

# The builtins' absolute paths, redirected into the unpacked tree (same length: nothing moves).
for file in "$WORK/root/usr/bin/node" "$LIB"; do
  real=$(readlink -f "$file")
  FROM=$PREFIX TO=$SUBSTITUTE perl -0777 -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$real"
done
if ! grep -q "$SUBSTITUTE" "$LIB"; then say "no $PREFIX path found in $LIB: not the build this script knows"; exit 1; fi

cat >"$WORK/bin/node" <<EOF
#!/usr/bin/env bash
# Debian's Node 18 $VERSION, unpacked by scripts/node18.sh (see there): the libraries of the
# unpacked tree first, and its usr/share/nodejs as file descriptor $FD, where the builtins' paths point.
here=\$(cd "\$(dirname "\$(readlink -f "\${BASH_SOURCE[0]}")")/.." && pwd)
export LD_LIBRARY_PATH="\$here/root/$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec $FD<"\$here/root$PREFIX"
exec "\$here/root/usr/bin/node" "\$@"
EOF
chmod 755 "$WORK/bin/node"

if LD_LIBRARY_PATH="$WORK/root/$LIBDIR" ldd "$WORK/root/usr/bin/node" | grep -q "not found"; then
  say "libraries still missing:"
  LD_LIBRARY_PATH="$WORK/root/$LIBDIR" ldd "$WORK/root/usr/bin/node" | grep "not found" >&2
  exit 1
fi

rm -rf "$WORK/debs" "$CACHE"
mv "$WORK" "$CACHE"
trap - EXIT
if ! works; then
  say "the unpacked node does not run; what it says:"
  "$NODE" -e 'console.log(process.version, typeof fetch)' >&2 || true
  exit 1
fi
say "$("$NODE" --version) in $CACHE"
echo "$NODE"
