# Linux-on-KVM checks for minicloud-vmm (busybox sh).
#
# Run inside the emulated hardware-KVM host (L1) by its /init, or natively by
# ./run where the host has hardware virtualization. Prints one line per result:
#   hwkvm: ok NAME [detail]      hwkvm: FAIL NAME detail
#   hwkvm: time NAME marker_ms=N exit_ms=N     (VMM start -> marker / -> exit)
#   hwkvm: bench SERIES I marker_ms=N exit_ms=N status=N
# and the guest's console prefixed with "  L2| ".
# Environment: VMM (minicloud-vmm), IMG (dir with kernel, bzImage, rootfs.ext4),
# WORK (scratch dir), API_STUB (api-stub.c, built static), BENCH (number of
# timed boots, default 0), BOOT_TIMEOUT (seconds per boot, default 90).

: "${VMM:?}" "${IMG:?}" "${WORK:?}"
BENCH=${BENCH:-0}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-90}
API_STUB=${API_STUB:-}
VMM_EXTRA= # more VMM arguments for the next boot
CMDLINE="console=ttyS0 reboot=k panic=1 root=/dev/vda rw"
cr=$(printf '\r')
# A guest that stops reading its stdin must not kill us when we write to it.
trap "" PIPE
mkdir -p "$WORK"

# Centiseconds since boot (busybox date has no %N).
cs() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }

ok() { echo "hwkvm: ok $*"; }
fail() { f_=$1; shift; echo "hwkvm: FAIL $f_ $*"; }

# Copies the guest console from stdin to $1 and to our stdout (prefixed),
# writing the time the marker line arrives to $1.marker.
tee_console() {
	exec 4>"$1"
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%"$cr"}
		case $line in *"minicloud-linux: ready "*)
			[ -f "$1.marker" ] || cs >"$1.marker" ;;
		esac
		printf '%s\n' "$line" >&4
		printf '  L2| %s\n' "$line"
	done
	exec 4>&-
}

# boot NAME KERNEL VCPUS MEMORY_MIB CMDLINE [STDIN]
# Runs the VMM on the working copy of rootfs.ext4 (and $VMM_EXTRA); leaves the console in
# $WORK/NAME.out, the VMM's status in NAME.rc, the times in NAME.t0/.marker/.end.
boot() {
	name=$1 kernel=$2 vcpus=$3 mem=$4 cmdline=$5 input=${6:-/dev/null}
	out=$WORK/$name.out
	rm -f "$out" "$out.marker"
	echo "hwkvm: boot $name vcpus=$vcpus memory_mib=$mem kernel=${kernel##*/}" >&2
	cs >"$out.t0"
	{
		timeout -s KILL "$BOOT_TIMEOUT" "$VMM" --kernel "$kernel" --cmdline "$cmdline" \
			--vcpus "$vcpus" --memory-mib "$mem" --disk "$WORK/rootfs.ext4" $VMM_EXTRA <"$input" 2>&1
		echo $? >"$out.rc"
	} | tee_console "$out"
	cs >"$out.end"
}

ms_since_t0() { # FILE-with-cs  NAME
	[ -f "$1" ] && echo $((($(cat "$1") - $(cat "$WORK/$2.out.t0")) * 10)) || echo none
}

# check_boot NAME VCPUS MEMORY_MIB: the marker, the vCPUs and memory it reports,
# a clean exit (status 0, no panic).
check_boot() {
	name=$1 vcpus=$2 mem=$3
	out=$WORK/$name.out
	rc=$(cat "$out.rc" 2>/dev/null || echo none)
	echo "hwkvm: time $name marker_ms=$(ms_since_t0 "$out.marker" "$name") exit_ms=$(ms_since_t0 "$out.end" "$name")"
	marker=$(grep -m1 '^minicloud-linux: ready ' "$out")
	if [ -z "$marker" ]; then
		fail "$name-marker" "no 'minicloud-linux: ready' line; VMM status $rc; last line: $(tail -n 1 "$out")"
		for c in vcpus memory exit; do fail "$name-$c" "no marker"; done
		return
	fi
	ok "$name-marker" "$marker"
	got_cpus=$(echo "$marker" | sed -n 's/.* cpus=\([0-9]*\).*/\1/p')
	got_mem=$(echo "$marker" | sed -n 's/.* memory_mib_e820=\([0-9]*\).*/\1/p')
	[ "$got_cpus" = "$vcpus" ] && ok "$name-vcpus" "cpus=$got_cpus" ||
		fail "$name-vcpus" "guest reports cpus=$got_cpus, configured $vcpus"
	[ "$got_mem" = "$mem" ] && ok "$name-memory" "memory_mib_e820=$got_mem" ||
		fail "$name-memory" "guest reports memory_mib_e820=$got_mem, configured $mem"
	if grep -q 'Kernel panic' "$out"; then
		fail "$name-exit" "guest panicked: $(grep -m1 'Kernel panic' "$out")"
	elif [ "$rc" = 0 ]; then
		ok "$name-exit" "VMM status 0 after guest reboot"
	else
		fail "$name-exit" "VMM status $rc (137: killed after ${BOOT_TIMEOUT}s); last line: $(tail -n 1 "$out")"
	fi
}

# expect NAME REGEX FILE: a line of the guest console
expect() {
	grep -q "$2" "$3" && ok "$1" "$(grep -m1 "$2" "$3")" || fail "$1" "no line matching '$2' on the console"
}

cp "$IMG/rootfs.ext4" "$WORK/rootfs.ext4" || { fail setup "cannot copy rootfs.ext4"; exit 1; }
token=t$(cs)x$$

# 1. One vCPU: boots to the marker; minicloud.run writes a file on the root disk.
boot one-vcpu "$IMG/kernel" 1 256 "$CMDLINE minicloud.run=\"echo persist-$token >/persist.txt && sync && echo wrote-$token\""
check_boot one-vcpu 1 256
expect one-vcpu-run "^wrote-$token\$" "$WORK/one-vcpu.out"
expect one-vcpu-run-status '^minicloud.run: exit=0$' "$WORK/one-vcpu.out"

# 2. Two vCPUs, other memory size: a second boot reads the file back; the
#    output of minicloud.run comes back through the console.
boot two-vcpus "$IMG/kernel" 2 384 "$CMDLINE minicloud.run=\"cat /persist.txt; echo run-output-\$((6*7))\""
check_boot two-vcpus 2 384
expect disk-persists "^persist-$token\$" "$WORK/two-vcpus.out"
expect run-output '^run-output-42$' "$WORK/two-vcpus.out"

# 3. Console input: no minicloud.run, so init starts a shell on the console;
#    type a command on the VMM's stdin and read its result.
rm -f "$WORK/in"
mkfifo "$WORK/in"
boot console-input "$IMG/kernel" 1 128 "$CMDLINE" "$WORK/in" &
bootpid=$!
exec 5>"$WORK/in"
got=no
i=0
while [ $i -lt $((BOOT_TIMEOUT * 2)) ]; do
	i=$((i + 1))
	sleep 0.5
	[ -f "$WORK/console-input.out.rc" ] && break
	[ -f "$WORK/console-input.out.marker" ] || continue
	if grep -q '^console-input-42$' "$WORK/console-input.out"; then
		got=yes
		break
	fi
	# Repeat until the shell answers: bytes sent before the guest opens the tty may be dropped.
	[ $((i % 4)) = 0 ] && printf 'echo console-input-$((6*7))\n' >&5
done
printf 'exit\n' >&5
wait $bootpid
exec 5>&-
check_boot console-input 1 128
[ $got = yes ] && ok console-input "guest shell answered a command typed on the VMM's stdin" ||
	fail console-input "no answer from the guest shell to input on the VMM's stdin"

# 4. The bzImage form of the same kernel.
boot bzimage "$IMG/bzImage" 1 256 "$CMDLINE minicloud.run=\"uname -r\""
check_boot bzimage 1 256
expect bzimage-run-status '^minicloud.run: exit=0$' "$WORK/bzimage.out"

# 5. A kernel panic (init exits) ends the VMM with a non-zero status.
boot panic "$IMG/kernel" 1 128 "console=ttyS0 reboot=k panic=1 root=/dev/vda rw init=/bin/false"
rc=$(cat "$WORK/panic.out.rc" 2>/dev/null || echo none)
echo "hwkvm: time panic marker_ms=none exit_ms=$(ms_since_t0 "$WORK/panic.out.end" panic)"
if ! grep -q 'Kernel panic' "$WORK/panic.out"; then
	fail panic-reported "the guest did not panic (VMM status $rc)"
elif [ "$rc" != 0 ] && [ "$rc" != 137 ] && [ "$rc" != none ]; then
	ok panic-reported "VMM status $rc: $(tail -n 1 "$WORK/panic.out")"
else
	fail panic-reported "VMM status $rc after a guest panic (want non-zero, not killed)"
fi

# 6. The workload commands of the image (/bin/minicloud-guest: mini's http.c
#    and workload_cmds.c on AF_VSOCK) against api-stub.c, listening where the
#    VMM sends guest connections to host port 80 (<uds_path>_80).
if [ -x "$API_STUB" ]; then
	rm -f "$WORK/vsock" "$WORK/vsock_80"
	"$API_STUB" "$WORK/vsock_80" >"$WORK/api-stub.log" 2>&1 &
	stub=$!
	i=0
	while [ ! -S "$WORK/vsock_80" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	VMM_EXTRA="--vsock-uds $WORK/vsock --vsock-cid 3"
	boot vsock-api "$IMG/kernel" 1 128 "$CMDLINE minicloud.run=\"metadata; produce readings 20 s1 0 5\""
	VMM_EXTRA=
	kill $stub 2>/dev/null
	wait $stub 2>/dev/null
	sed 's/^/  api| /' "$WORK/api-stub.log"
	check_boot vsock-api 1 128
	expect vsock-api-metadata '^metadata: {.*"instance_id":"i-hwkvm"' "$WORK/vsock-api.out"
	printf 'produce: acked %s partition=0 offsets=%s\n' 0..4 0..4 5..9 5..9 10..14 10..14 15..19 15..19 >"$WORK/acked.want"
	grep '^produce: acked ' "$WORK/vsock-api.out" >"$WORK/acked.got"
	if cmp -s "$WORK/acked.want" "$WORK/acked.got"; then
		ok vsock-api-produce "4 batches acked, the last: $(tail -n 1 "$WORK/acked.got")"
	else
		fail vsock-api-produce "$(grep -c . "$WORK/acked.got") 'produce: acked' lines, want 4: 0..4 to 15..19, offsets the same"
	fi
	expect vsock-api-produce-done '^produce: done 20 records in [0-9]* ms$' "$WORK/vsock-api.out"
	expect vsock-api-run-status '^minicloud.run: exit=0$' "$WORK/vsock-api.out"
else
	for c in marker exit metadata produce produce-done; do fail vsock-api-$c "no api-stub (API_STUB='$API_STUB')"; done
fi

# Benchmark: VMM start -> marker and -> exit, one vCPU, 256 MiB; the
# "console" series with the usual command line, the "quiet" one with `quiet`
# (under nested emulation every byte on the emulated UART costs an exit).
for series in console quiet; do
	extra=
	[ $series = quiet ] && extra=" quiet"
	n=0
	while [ $n -lt "$BENCH" ]; do
		n=$((n + 1))
		b=bench-$series-$n
		boot $b "$IMG/kernel" 1 256 "$CMDLINE$extra minicloud.run=true"
		echo "hwkvm: bench $series $n marker_ms=$(ms_since_t0 "$WORK/$b.out.marker" $b) exit_ms=$(ms_since_t0 "$WORK/$b.out.end" $b) status=$(cat "$WORK/$b.out.rc")"
	done
done
