//! The mini guest must use only what PVM can emulate: no SSE/AVX/x87,
//! xsave, cmpxchg16b, popcnt, int3, syscall (see shared/PVM.md).

mod common;

use std::process::Command;

#[test]
fn mini_kernel_has_no_forbidden_instructions() {
    let kernel = common::mini_kernel();
    let check = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/check-isa");
    let out = Command::new(check)
        .arg(&kernel)
        .output()
        .expect("run check-isa");
    assert!(
        out.status.success(),
        "check-isa found forbidden instructions:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
