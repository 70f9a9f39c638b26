//! virtio-blk end to end: what the guest writes lands in the host file and
//! survives into a second boot; read-only disks refuse writes.

mod common;

use std::os::unix::fs::FileExt;

use common::*;

fn pattern_word(seed: u64, sector: u64, j: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(sector * 64 + j)
}

#[test]
fn data_written_in_one_boot_is_read_back_in_the_next_and_on_the_host() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(8 << 20))
        .expect("image");
    let disk = img.to_str().expect("utf8");

    let o = run_mini(&["--disk", disk], "blk-write 0 100 200 77");
    assert_status(&o, 0);
    assert!(
        stdout(&o).contains("blk-write: ok disk=0 sectors=200"),
        "{}",
        stdout(&o)
    );

    // The host file holds exactly the guest's pattern.
    let f = std::fs::File::open(&img).expect("open");
    for (sector, j) in [(100u64, 0u64), (150, 31), (299, 63)] {
        let mut w = [0u8; 8];
        f.read_exact_at(&mut w, sector * 512 + j * 8).expect("read");
        assert_eq!(
            u64::from_le_bytes(w),
            pattern_word(77, sector, j),
            "sector {sector} word {j}"
        );
    }
    let mut before = [0xffu8; 512];
    f.read_exact_at(&mut before, 99 * 512).expect("read");
    assert_eq!(before, [0u8; 512], "sector 99 untouched");

    // A second boot, with two vCPUs, verifies it.
    let o = run_mini(
        &["--disk", disk, "--vcpus", "2"],
        "blk-verify 0 100 200 77; blk-verify 0 100 200 78",
    );
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("blk-verify: ok disk=0 sectors=200"), "{out}");
    assert!(
        out.contains("blk-verify: FAIL disk=0 sector=100"),
        "wrong seed must fail: {out}"
    );
}

#[test]
fn read_only_disk_refuses_writes_and_stays_unchanged() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("ro.img");
    std::fs::write(&img, vec![0x5au8; 1 << 20]).expect("image");
    let spec = format!("{},ro,id=golden", img.display());
    let o = run_mini(&["--disk", &spec], "blk-write 0 0 8 1; blk-read 0 0");
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("disk0: sectors=2048 ro=1 id=golden"), "{out}");
    assert!(out.contains("blk-write: error disk=0 status=1"), "{out}");
    assert!(
        out.contains(&format!("blk-read: {}", "5a".repeat(32))),
        "{out}"
    );
    assert!(
        std::fs::read(&img)
            .expect("read")
            .iter()
            .all(|b| *b == 0x5a)
    );
}

#[test]
fn several_disks_appear_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    std::fs::write(&a, vec![0u8; 4096]).expect("a");
    std::fs::write(&b, vec![0u8; 8192]).expect("b");
    let o = run_mini(
        &[
            "--disk",
            a.to_str().expect("a"),
            "--disk",
            &format!("{},id=second", b.display()),
        ],
        "blk-write 1 0 16 5; blk-verify 1 0 16 5",
    );
    assert_status(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("disk0: sectors=8 ro=0"), "{out}");
    assert!(out.contains("disk1: sectors=16 ro=0 id=second"), "{out}");
    assert!(out.contains("blk-verify: ok disk=1 sectors=16"), "{out}");
    assert!(
        std::fs::read(&a).expect("a").iter().all(|x| *x == 0),
        "disk 0 untouched"
    );
}
