#!/usr/bin/env bash
# scripts/run.sh: the main job, from a fresh machine.
#
# Installs what is missing, builds minicloud and the guest images, starts the
# control plane (`minicloud serve`: REST API on 127.0.0.1:7070, state in
# SQLite under ~/.local/share/minicloud) in the background, launches a first
# VM through the API, shows its console, then runs the hosted stream pipeline
# (`minicloud pipeline`: sensor VMs produce over vsock, a stream job windows
# the readings, a sink writes the windows to a bucket, a consumer VM reads
# them, a replayed job version is checked, and the bill is shown), prints
# where to look, and leaves the daemon running.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "run: building minicloud (release)"
cargo build --release --workspace --bins
bin=$PWD/target/release
data=${MINICLOUD_DATA:-$HOME/.local/share/minicloud}
listen=${MINICLOUD_LISTEN:-127.0.0.1:7070}
url=http://$listen
mkdir -p "$data"

# A daemon left running by an earlier build is restarted on the new binary
# (VMs keep running; the new daemon reattaches to them).
for pid in $(pgrep -f "minicloud serve" || true); do
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	if [[ $exe == *"(deleted)" || ($exe == "$bin/minicloud" && "$bin/minicloud" -nt "/proc/$pid") ]]; then
		echo "run: restarting minicloud serve (pid $pid) on the new build"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
done
if curl -fsS "$url/healthz" >/dev/null 2>&1; then
	echo "run: minicloud serve already answers on $url"
else
	echo "run: starting minicloud serve on $url (log: $data/serve.log)"
	nohup "$bin/minicloud" serve --data-dir "$data" --listen "$listen" >>"$data/serve.log" 2>&1 &
	for _ in $(seq 1 100); do
		curl -fsS "$url/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "$url/healthz" >/dev/null || { tail -n 20 "$data/serve.log"; exit 1; }
fi
export MINICLOUD_URL=$url
export MINICLOUD_TOKEN=$(cat "$data/admin.token")

"$bin/minicloud" host info
name=first-vm-$(date +%s)
echo "run: launching $name (mini image, 2 vCPUs, 256 MiB)"
"$bin/minicloud" vm launch --name "$name" --image mini --vcpus 2 --memory 256 --wait
sleep 0.5
echo "run: its console:"
"$bin/minicloud" vm console "$name" | sed 's/^/  | /'
echo
"$bin/minicloud" vm list
echo
echo "run: the hosted pipeline (minicloud pipeline --fresh)"
"$bin/minicloud" pipeline --fresh
cat <<EOF2

minicloud is running:
  API           $url  (OpenAPI: $url/openapi.json)
  admin token   $data/admin.token  (the CLI reads ~/.config/minicloud/config.json)
  daemon log    $data/serve.log
Try:
  $bin/minicloud vm console $name --attach     # type 'help'; Ctrl-] leaves
  $bin/minicloud vm launch --run "info; cpu-burn 2" --wait
  $bin/minicloud vm stop $name --wait
  $bin/minicloud pipeline --fresh              # the pipeline again
  $bin/minicloud bucket list; $bin/minicloud sink list; $bin/minicloud job list
  curl -H "Authorization: Bearer \$(cat $data/admin.token)" $url/v1/instances
Stop the daemon with: pkill -TERM -f 'minicloud serve'   (VMs keep running)
EOF2
