/*
 * idle-vm: keeps one idle KVM VM (in-kernel irqchip, one vCPU that never
 * runs) open until killed. Run in the emulated hardware-KVM host (L1) for the
 * whole test so that KVM's static keys, flipped when the first VM or vCPU is
 * created and flipped back when the last goes away, never flip during the
 * tests: QEMU's TCG sometimes deadlocks patching the kernel text for that
 * (see ../shared/PVM.md). Built by ./run with gcc -static.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		perror("idle-vm: open /dev/kvm");
		return 1;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		perror("idle-vm: KVM_CREATE_VM");
		return 1;
	}
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
		perror("idle-vm: KVM_CREATE_IRQCHIP");
		return 1;
	}
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		perror("idle-vm: KVM_CREATE_VCPU");
		return 1;
	}
	printf("hwkvm-l1: idle-vm holding a VM with one vCPU\n");
	fflush(stdout);
	for (;;)
		pause();
}
