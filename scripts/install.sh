#!/usr/bin/env bash
# Installs apikeyd as a systemd service on Debian or Raspberry Pi OS (Node.js 18 or later):
#
#   sudo scripts/install.sh              # port 8080
#   sudo PORT=80 scripts/install.sh      # port 80 (the service gets CAP_NET_BIND_SERVICE, nothing else)
#
# Run it from a copy of the repository, or of just dist/apikeyd.js, device-config/ and scripts/.
# It installs the bundle and the factory defaults under /usr/lib/apikeyd, the unit
# (scripts/apikeyd.service, filled in) as /etc/systemd/system/apikeyd.service, the field command
# /usr/bin/apikeyd, and /etc/default/apikeyd for later settings (kept if it exists); creates the
# system user apikeyd and the state folder /var/lib/apikeyd (0700; existing state is never
# touched); then enables and (re)starts the service.
#
# Settings (environment): PORT (8080); NODE (the node on PATH); SERVICE_USER (apikeyd);
# UNITDIR (/etc/systemd/system; packages use /lib/systemd/system); DESTDIR: stage every file
# under that folder instead, create no user and leave systemd alone (packaging, tests; no root).
set -euo pipefail

die() {
  echo "install.sh: $*" >&2
  exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(dirname "$here")"
DESTDIR="${DESTDIR:-}"
PORT="${PORT:-8080}"
SERVICE_USER="${SERVICE_USER:-apikeyd}"
UNITDIR="${UNITDIR:-/etc/systemd/system}"
LIBDIR=/usr/lib/apikeyd
STATEDIR=/var/lib/apikeyd
BINDIR=/usr/bin
DEFAULTS=/etc/default/apikeyd

[[ "$PORT" =~ ^[0-9]{1,5}$ ]] && ((PORT >= 1 && PORT <= 65535)) || die "PORT must be a number from 1 to 65535, not '$PORT'"
[[ "$SERVICE_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "SERVICE_USER '$SERVICE_USER' is not a valid user name"
if [[ -z "$DESTDIR" && "$(id -u)" -ne 0 ]]; then
  die "run as root (sudo $0), or set DESTDIR to stage the files into a folder"
fi

bundle=""
for candidate in "$source_dir/dist/apikeyd.js" "$source_dir/apikeyd.js"; do
  if [[ -f "$candidate" ]]; then
    bundle="$candidate"
    break
  fi
done
[[ -n "$bundle" ]] || die "no dist/apikeyd.js beside scripts/ (npm run build makes it; copy dist/ over with scripts/)"
[[ -f "$source_dir/device-config/apikeys.json" ]] || die "no device-config/ beside scripts/ (copy it over too)"
[[ -f "$here/apikeyd.service" ]] || die "no $here/apikeyd.service"

NODE="${NODE:-$(command -v node || true)}"
if [[ -z "$NODE" ]]; then
  [[ -n "$DESTDIR" ]] || die "node not found: install Node.js 18 or later first (sudo apt install nodejs)"
  NODE=/usr/bin/node
fi
[[ "$NODE" = /* ]] || die "NODE must be an absolute path, not '$NODE'"
if [[ -x "$NODE" ]]; then
  major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
  ((major >= 18)) || die "$NODE is Node.js $major; apikeyd needs 18 or later"
elif [[ -z "$DESTDIR" ]]; then
  die "$NODE is not an executable"
fi

# Ports below 1024 need the one capability; the unit otherwise gets none.
capabilities=""
if ((PORT < 1024)); then capabilities="CAP_NET_BIND_SERVICE"; fi

echo "installing apikeyd ($bundle) for port $PORT${DESTDIR:+ into $DESTDIR}"

# The bundle and the factory defaults; defaults of a previous version are replaced whole.
install -d -m 0755 "$DESTDIR$LIBDIR" "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$(dirname "$DEFAULTS")"
install -m 0644 "$bundle" "$DESTDIR$LIBDIR/apikeyd.js"
rm -rf "$DESTDIR$LIBDIR/device-config"
cp -R "$source_dir/device-config" "$DESTDIR$LIBDIR/device-config"
chmod -R u=rwX,go=rX "$DESTDIR$LIBDIR/device-config"

sed -e "s|@NODE@|$NODE|g" -e "s|@LIBDIR@|$LIBDIR|g" -e "s|@STATEDIR@|$STATEDIR|g" \
  -e "s|@PORT@|$PORT|g" -e "s|@USER@|$SERVICE_USER|g" -e "s|@CAPABILITIES@|$capabilities|g" \
  "$here/apikeyd.service" >"$DESTDIR$UNITDIR/apikeyd.service"
chmod 0644 "$DESTDIR$UNITDIR/apikeyd.service"

# The field command: the installed bundle on the installed folders, as the service user, so that
# whatever it writes stays readable by the service.
cat >"$DESTDIR$BINDIR/apikeyd" <<EOF
#!/bin/sh
# apikeyd on this device (installed by scripts/install.sh): apikeyd keys show, apikeyd check, ...
# Runs as $SERVICE_USER with the service's folders and the settings of $DEFAULTS.
set -a
[ -r $DEFAULTS ] && . $DEFAULTS
set +a
export APIKEYD_CONFIG_DIR="\${APIKEYD_CONFIG_DIR:-$LIBDIR/device-config}"
export APIKEYD_STATE_DIR="\${APIKEYD_STATE_DIR:-$STATEDIR}"
if [ "\$(id -u)" = 0 ]; then
  exec runuser -u $SERVICE_USER -- $NODE $LIBDIR/apikeyd.js "\$@"
fi
exec $NODE $LIBDIR/apikeyd.js "\$@"
EOF
chmod 0755 "$DESTDIR$BINDIR/apikeyd"

if [[ ! -e "$DESTDIR$DEFAULTS" ]]; then
  cat >"$DESTDIR$DEFAULTS" <<'EOF'
# Settings of the apikeyd service (APIKEYD_* variables, see node /usr/lib/apikeyd/apikeyd.js --help).
# The port is set in the unit; run scripts/install.sh again with PORT=... to change it.
# After a change: sudo systemctl restart apikeyd
#APIKEYD_TLS_CERT=/etc/apikeyd/cert.pem
#APIKEYD_TLS_KEY=/etc/apikeyd/key.pem
#APIKEYD_LOG_FORMAT=json
#APIKEYD_ALLOWED_HOSTS=192.168.15.100:8080
EOF
  chmod 0644 "$DESTDIR$DEFAULTS"
fi

install -d -m 0700 "$DESTDIR$STATEDIR"

if [[ -n "$DESTDIR" ]]; then
  echo "DESTDIR is set: files staged under $DESTDIR; no user created, systemd left alone. A real install also runs:"
  echo "  useradd --system --user-group --home-dir $STATEDIR --no-create-home --shell /usr/sbin/nologin $SERVICE_USER"
  echo "  chown -R $SERVICE_USER:$SERVICE_USER $STATEDIR"
  echo "  systemctl daemon-reload && systemctl enable apikeyd && systemctl restart apikeyd"
  exit 0
fi

if ! getent passwd "$SERVICE_USER" >/dev/null; then
  useradd --system --user-group --home-dir "$STATEDIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
  echo "created the system user $SERVICE_USER"
fi
# Files a command run as root may have left behind must stay readable by the service.
chown -R "$SERVICE_USER:$SERVICE_USER" "$STATEDIR"

if [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable apikeyd.service
  systemctl restart apikeyd.service
  echo "apikeyd is running: systemctl status apikeyd; logs: journalctl -u apikeyd"
else
  echo "systemd is not running here: the unit is installed; start the service once it is"
fi
