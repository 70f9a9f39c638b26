//! Booting the mini guest under real KVM: the boot line, vCPU and memory
//! counts, `minicloud.run`, and how each kind of end shows in the status.

mod common;

use common::*;

#[test]
fn prints_its_boot_line_and_powers_off_cleanly() {
    let o = run_mini(&[], "echo done-marker");
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(
        out.starts_with("minicloud-mini v0.1.0 boot=linux64"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "done-marker"), "{out}");
    assert!(out.contains("minicloud.run: done"), "{out}");
    assert!(stderr(&o).contains("guest powered off"), "{}", stderr(&o));
}

#[test]
fn guest_sees_exactly_the_configured_vcpus_and_memory() {
    for (vcpus, mib) in [
        (1u32, 64u64),
        (2, 128),
        (3, 256),
        (4, 1024),
        (8, 3584),
        (2, 4608),
    ] {
        let v = vcpus.to_string();
        let m = mib.to_string();
        let o = run_mini(&["--vcpus", &v, "--memory-mib", &m], "info");
        assert_status(&o, 0);
        let out = stdout(&o);
        let info = out
            .lines()
            .find(|l| l.starts_with("cpus=") && l.contains("version="))
            .unwrap_or_else(|| panic!("no info line:\n{out}"));
        assert_eq!(
            field(info, "cpus"),
            Some(v.as_str()),
            "vcpus={vcpus} mib={mib}: {info}"
        );
        assert_eq!(
            field(info, "memory_mib"),
            Some(m.as_str()),
            "vcpus={vcpus} mib={mib}: {info}"
        );
    }
}

#[test]
fn reboot_ends_the_vmm_with_status_zero() {
    let o = run_mini(&[], "reboot");
    assert_status(&o, 0);
    assert!(stderr(&o).contains("guest reset"), "{}", stderr(&o));
}

#[test]
fn guest_panic_has_its_own_status_and_reason() {
    let o = run_mini(&[], "panic disk on fire");
    assert_status(&o, 3);
    assert!(stdout(&o).contains("PANIC: disk on fire"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("guest panic: disk on fire"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cpu_burn_reads_a_clock() {
    let start = std::time::Instant::now();
    let o = run_mini(&["--vcpus", "1"], "cpu-burn 1");
    assert_status(&o, 0);
    assert!(
        stdout(&o).contains("cpu-burn: done seconds=1"),
        "{}",
        stdout(&o)
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(900));
}

#[test]
fn mem_test_touches_guest_memory() {
    let o = run_mini(&["--memory-mib", "64"], "mem-test 4");
    assert_status(&o, 0);
    assert!(stdout(&o).contains("mem-test: ok mib=4"), "{}", stdout(&o));
}

/// A kernel whose only instruction is `ud2`: with the VMM's empty boot IDT
/// the exception cannot be delivered, which is a triple fault on hardware
/// KVM; PVM may stop earlier with an emulation error. Either way the VMM
/// names it and exits with its status.
#[test]
fn a_guest_that_faults_is_reported_with_its_instruction_pointer() {
    let dir = tempfile::tempdir().expect("tmp");
    let k = dir.path().join("ud2.elf");
    std::fs::write(&k, tiny_elf(&[0x0f, 0x0b])).expect("write");
    let o = run_vmm(
        &["--kernel", k.to_str().expect("utf8")],
        std::time::Duration::from_secs(20),
    );
    let err = stderr(&o);
    match o.status.code() {
        Some(4) => assert!(
            err.contains("triple fault on vCPU 0 at rip=0x100078"),
            "{err}"
        ),
        Some(5) => assert!(
            err.contains("KVM internal error on vCPU 0 at rip="),
            "{err}"
        ),
        other => panic!("status {other:?}: {err}"),
    }
}

/// A minimal ELF64 executable with `code` at 0x100078, its entry point.
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let entry: u64 = 0x10_0078;
    let total = 0x78 + code.len() as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&64u16.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    // PT_LOAD, R+X, offset 0 at 0x100000.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&0x10_0000u64.to_le_bytes());
    e.extend_from_slice(&0x10_0000u64.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    assert_eq!(e.len(), 0x78);
    e.extend_from_slice(code);
    e
}
