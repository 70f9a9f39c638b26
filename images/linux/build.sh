#!/usr/bin/env bash
# Builds the minicloud `linux` guest image (called by `images/build linux`).
#
#   images/linux/build.sh          build (cached) into $MINICLOUD_IMAGES/linux/
#   images/linux/build.sh --force  rebuild (make still reuses its objects)
#   images/linux/build.sh deps     print the Debian packages the build needs
#
# Output, in ${MINICLOUD_IMAGES:-$HOME/.cache/minicloud/images}/linux/:
#   kernel       uncompressed ELF vmlinux (PVH note; 64-bit entry via boot_params)
#   bzImage      the same kernel in bzImage form
#   rootfs.ext4  busybox-static root filesystem whose /sbin/init is images/linux/init,
#                with /bin/minicloud-guest (images/linux/guest/: mini's workload
#                commands, images/mini/http.c + workload_cmds.c, on AF_VSOCK)
#                and its links metadata, produce, consume, queue-send,
#                queue-receive-delete, http
#   config       the kernel's .config
#   SHA256SUMS   of the above
# The kernel is Debian's linux-source-6.1, `make tinyconfig` plus
# images/linux/kernel.config. A stamp of every input's hash makes a second
# run take seconds. Environment: MINICLOUD_IMAGES, MINICLOUD_BUILD_CACHE
# (kernel source and objects; default ~/.cache/minicloud/build/linux),
# MINICLOUD_JOBS (make -j, default 2), SOURCE_DATE_EPOCH.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

linux_deps() {
	# linux-source-6.1 and its build tools; busybox-static and e2fsprogs for the root fs;
	# libc6-dev (libc.a) for the static minicloud-guest
	echo linux-source-6.1 xz-utils make gcc binutils flex bison bc libelf-dev libssl-dev busybox-static e2fsprogs libc6-dev
}

force=0
case ${1:-} in
deps)
	linux_deps
	exit 0
	;;
-f | --force) force=1 ;;
"") ;;
*)
	echo "usage: images/linux/build.sh [--force | deps]" >&2
	exit 2
	;;
esac

images=${MINICLOUD_IMAGES:-$HOME/.cache/minicloud/images}
out=$images/linux
work=${MINICLOUD_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/minicloud/build/linux}
jobs=${MINICLOUD_JOBS:-2}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
# Fixed identity of the root filesystem (reproducible images).
rootfs_uuid=6d696e69-636c-6f75-642d-6c696e757800
rootfs_size=64M
tarball=/usr/src/linux-source-6.1.tar.xz
busybox=/bin/busybox

say() { printf 'images/linux: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for f in "$tarball" "$busybox"; do
	[[ -e $f ]] || die "$f is missing; install: apt-get install $(linux_deps)"
done
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing; install e2fsprogs"
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || die "libc.a is missing; install libc6-dev"
"$busybox" --list-full >/dev/null 2>&1 || die "$busybox is not busybox-static"

pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo unknown; }
src_ver=$(pkgver linux-source-6.1)

# Kernel inputs: the fragment, the source package, the compiler, this recipe's version.
kernel_recipe=1
kernel_hash=$({
	echo "recipe $kernel_recipe"
	echo "linux-source-6.1 $src_ver $(stat -c %s "$tarball")"
	gcc --version | head -1
	cat "$here/kernel.config"
} | sha256sum | cut -d' ' -f1)
# minicloud-guest: the shim and the mini sources it compiles, with mini's
# headers; the workload commands it serves (a link each).
mini=$(cd "$here/../mini" && pwd)
guest_srcs=("$here/guest/shim.c" "$mini/http.c" "$mini/workload_cmds.c")
guest_hdrs=("$mini/http.h" "$mini/vsock.h" "$mini/kernel.h")
guest_cmds=(metadata produce consume queue-send queue-receive-delete http)
# Whole-image inputs: the kernel's, this script, the init, the guest program
# and its compiler and libc, busybox, mkfs. (Not the kernel's: changing only
# the guest program rebuilds the root filesystem, not the kernel.)
image_hash=$({
	echo "$kernel_hash"
	cat "$here/build.sh" "$here/init"
	for f in "${guest_srcs[@]}" "${guest_hdrs[@]}"; do
		printf 'file %s\n' "${f##*/}"
		cat "$f"
	done
	echo "libc6-dev $(pkgver libc6-dev)"
	sha256sum "$busybox"
	echo "e2fsprogs $(pkgver e2fsprogs) epoch $epoch"
} | sha256sum | cut -d' ' -f1)

if [[ $force == 0 && -f $out/.stamp && $(cat "$out/.stamp") == "$image_hash" ]] &&
	(cd "$out" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
	say "up to date in $out"
	exit 0
fi

mkdir -p "$work" "$out"
t0=$SECONDS

# --- minicloud-guest ---------------------------------------------------------------
# First: seconds, and a compile error should not wait for the kernel.
say "building minicloud-guest (static, glibc)"
rm -f "$work/minicloud-guest"
gcc -std=gnu11 -O2 -Wall -Wextra -fno-strict-aliasing -I"$mini" \
	-ffile-prefix-map="$here"=images/linux -ffile-prefix-map="$mini"=images/mini \
	-static -s -Wl,--build-id=none -o "$work/minicloud-guest" "${guest_srcs[@]}" ||
	die "compiling minicloud-guest failed"
[[ $(readelf -l "$work/minicloud-guest") != *INTERP* ]] || die "minicloud-guest is not static"
"$work/minicloud-guest" --help >/dev/null || die "minicloud-guest does not run"
applets=" $("$busybox" --list | tr '\n' ' ')"
for c in "${guest_cmds[@]}"; do
	[[ $applets != *" $c "* ]] || die "busybox has an applet named $c: its link would replace it"
done

# --- kernel ------------------------------------------------------------------
export KBUILD_BUILD_TIMESTAMP="@$epoch" KBUILD_BUILD_USER=minicloud \
	KBUILD_BUILD_HOST=minicloud KBUILD_BUILD_VERSION=1
# Kbuild passes KBUILD_BUILD_TIMESTAMP to `date -d`.
KBUILD_BUILD_TIMESTAMP=$(LC_ALL=C date -u -d "@$epoch" '+%a %b %e %H:%M:%S UTC %Y')
src=$work/src-$src_ver
obj=$work/obj
if [[ $force == 1 || ! -f $work/kernel.stamp || $(cat "$work/kernel.stamp") != "$kernel_hash" || ! -f $obj/vmlinux ]]; then
	if [[ ! -f $src/Makefile ]]; then
		say "unpacking $tarball ($src_ver)"
		rm -rf "$src" "$work/src.tmp"
		mkdir -p "$work/src.tmp"
		tar -xJf "$tarball" -C "$work/src.tmp"
		mv "$work/src.tmp/linux-source-6.1" "$src"
		rmdir "$work/src.tmp"
	fi
	mkdir -p "$obj"
	say "configuring: tinyconfig + kernel.config"
	make -s -C "$src" O="$obj" ARCH=x86_64 tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$here/kernel.config" >/dev/null
	make -s -C "$src" O="$obj" ARCH=x86_64 olddefconfig >/dev/null
	missing=0
	while read -r line; do
		[[ -z $line || $line == \#* ]] && continue
		grep -qxF "$line" "$obj/.config" || { say "kernel.config: $line did not survive olddefconfig"; missing=1; }
	done <"$here/kernel.config"
	((missing == 0)) || die "kernel configuration is incomplete"
	say "building the kernel (make -j$jobs; about 4 minutes on 2 cores)"
	nice -n 10 make -s -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" vmlinux bzImage
	echo "$kernel_hash" >"$work/kernel.stamp"
	say "kernel built in $((SECONDS - t0)) s"
else
	say "kernel up to date ($obj)"
fi
readelf -n "$obj/vmlinux" | grep -q 'Xen.*0x00000012' ||
	die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)"

# --- root filesystem ----------------------------------------------------------
say "making rootfs.ext4 (busybox $(pkgver busybox-static))"
stage=$work/rootfs
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,mnt,var}
cp "$busybox" "$stage/bin/busybox"
"$busybox" --list-full | while read -r applet; do
	[[ $applet == bin/busybox || $applet == sbin/init ]] && continue
	# relative link to /bin/busybox
	up=$(dirname "$applet" | sed -e 's#[^/]*#..#g')
	ln -sf "$up/bin/busybox" "$stage/$applet"
done
install -m 0755 "$here/init" "$stage/sbin/init"
install -m 0755 "$work/minicloud-guest" "$stage/bin/minicloud-guest"
for c in "${guest_cmds[@]}"; do
	ln -s minicloud-guest "$stage/bin/$c"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"
printf 'minicloud\n' >"$stage/etc/hostname"
chmod 1777 "$stage/tmp"
find "$stage" -exec touch -h -d "@$epoch" {} +
rm -f "$out/rootfs.ext4.tmp"
E2FSPROGS_FAKE_TIME=$epoch SOURCE_DATE_EPOCH=$epoch mkfs.ext4 -q -F -L minicloud-root \
	-U "$rootfs_uuid" -E "root_owner=0:0,hash_seed=$rootfs_uuid" \
	-d "$stage" "$out/rootfs.ext4.tmp" "$rootfs_size" >"$work/mkfs.log" 2>&1 ||
	{ cat "$work/mkfs.log" >&2; die "mkfs.ext4 failed"; }
# mkfs.ext4 -d copies each file's ctime, which cannot be set on the staging
# files: set every inode's ctime to the epoch so that the image is reproducible.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | sed -e "s#^\.\(.*\)#sif \1 ctime @$epoch#") >"$work/ctime.cmds"
echo "sif / ctime @$epoch" >>"$work/ctime.cmds"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/ctime.cmds" "$out/rootfs.ext4.tmp" >/dev/null 2>"$work/debugfs.log" ||
	{ cat "$work/debugfs.log" >&2; die "debugfs failed"; }

e2fsck -fn "$out/rootfs.ext4.tmp" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; die "e2fsck finds errors in rootfs.ext4"; }

# --- install -------------------------------------------------------------------
cp "$obj/vmlinux" "$out/kernel.tmp"
cp "$obj/arch/x86/boot/bzImage" "$out/bzImage.tmp"
cp "$obj/.config" "$out/config"
mv "$out/kernel.tmp" "$out/kernel"
mv "$out/bzImage.tmp" "$out/bzImage"
mv "$out/rootfs.ext4.tmp" "$out/rootfs.ext4"
(cd "$out" && sha256sum kernel bzImage rootfs.ext4 config >SHA256SUMS)
echo "$image_hash" >"$out/.stamp"
say "done in $((SECONDS - t0)) s: $out"
(cd "$out" && ls -l kernel bzImage rootfs.ext4 | awk '{ printf "  %-12s %s bytes\n", $9, $5 }' >&2)
