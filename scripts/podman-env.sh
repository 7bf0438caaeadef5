# shellcheck shell=bash
# Sourced, not run: points podman at configuration and storage kept under the
# project's state dir, so no system file is edited and `rm -rf var/containers`
# (or `podman system reset -f` with these variables set) wipes it all.
#
#   . scripts/podman-env.sh      # sets CONTAINERS_CONF, CONTAINERS_STORAGE_CONF
#
# Why each setting (see docs/deploy.md, "Running locally"):
#   runc            crun fails in this kind of sandbox ("cgroups in hybrid mode")
#   cgroupfs        there is no systemd to ask for cgroups
#   ulimits         a container may not raise limits above the host's hard ones
#                   (no CAP_SYS_RESOURCE), so nofile is the host's hard limit;
#                   any --ulimit flag replaces this list: give nofile and nproc
#   events file     no journald
# Environment: SVCKIT_CONTAINERS_STATE overrides the state dir
# (default $REPO/var/containers).

_svckit_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVCKIT_CONTAINERS_STATE=${SVCKIT_CONTAINERS_STATE:-$_svckit_repo/var/containers}
mkdir -p "$SVCKIT_CONTAINERS_STATE"/{storage,run,networks}
SVCKIT_CONTAINERS_STATE=$(cd "$SVCKIT_CONTAINERS_STATE" && pwd)

_svckit_nofile=$(ulimit -Hn)
case $_svckit_nofile in unlimited|'') _svckit_nofile=1048576 ;; esac
[ "$_svckit_nofile" -gt 65536 ] && _svckit_nofile=65536
_svckit_nproc=$(ulimit -Hu)
case $_svckit_nproc in unlimited|'') _svckit_nproc=32768 ;; esac
[ "$_svckit_nproc" -gt 32768 ] && _svckit_nproc=32768

cat > "$SVCKIT_CONTAINERS_STATE/storage.conf.tmp" <<CONF
[storage]
driver = "overlay"
graphroot = "$SVCKIT_CONTAINERS_STATE/storage"
runroot = "$SVCKIT_CONTAINERS_STATE/run"
[storage.options.overlay]
mountopt = "nodev"
CONF
cat > "$SVCKIT_CONTAINERS_STATE/containers.conf.tmp" <<CONF
[containers]
default_ulimits = ["nofile=$_svckit_nofile:$_svckit_nofile", "nproc=$_svckit_nproc:$_svckit_nproc"]
[network]
network_backend = "netavark"
network_config_dir = "$SVCKIT_CONTAINERS_STATE/networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$SVCKIT_CONTAINERS_STATE/run/libpod"
CONF
# Rewrite only on change, so a concurrent podman never reads a half-written file.
for _svckit_f in storage.conf containers.conf; do
  if cmp -s "$SVCKIT_CONTAINERS_STATE/$_svckit_f.tmp" "$SVCKIT_CONTAINERS_STATE/$_svckit_f"; then
    rm -f "$SVCKIT_CONTAINERS_STATE/$_svckit_f.tmp"
  else
    mv -f "$SVCKIT_CONTAINERS_STATE/$_svckit_f.tmp" "$SVCKIT_CONTAINERS_STATE/$_svckit_f"
  fi
done

export SVCKIT_CONTAINERS_STATE
export CONTAINERS_CONF=$SVCKIT_CONTAINERS_STATE/containers.conf
export CONTAINERS_STORAGE_CONF=$SVCKIT_CONTAINERS_STATE/storage.conf
unset _svckit_repo _svckit_nofile _svckit_nproc _svckit_f
