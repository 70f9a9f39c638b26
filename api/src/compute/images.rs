//! Images registered from the `images/` cache, and whether this host can
//! run them.

use std::path::{Path, PathBuf};

use hypervisor::probe::HostCapability;
use serde::Serialize;
use utoipa::ToSchema;

/// A bootable image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Image {
    /// Name (mini, linux).
    pub name: String,
    /// Kernel path.
    pub kernel: String,
    /// Root filesystem, for images that have one.
    pub rootfs: Option<String>,
    /// Whether the image is built and present.
    pub available: bool,
    /// Whether this host can run it.
    pub runnable: bool,
    /// Why not, when it cannot.
    pub note: Option<String>,
    /// Extra kernel command line the image needs.
    pub cmdline: String,
}

/// The known images under `dir` (`<dir>/<name>/kernel`).
pub fn scan(dir: &Path, cap: &HostCapability) -> Vec<Image> {
    ["mini", "linux"]
        .iter()
        .map(|name| {
            let kernel = dir.join(name).join("kernel");
            let rootfs = (*name == "linux").then(|| dir.join(name).join("rootfs.ext4"));
            let available = kernel.exists() && rootfs.as_ref().is_none_or(|r| r.exists());
            let runnable_here = cap.images.iter().any(|i| i == name);
            let note = if !available {
                Some(format!("not built: run `images/build {name}`"))
            } else if !runnable_here {
                Some(cap.note.clone())
            } else {
                None
            };
            Image {
                name: name.to_string(),
                kernel: kernel.display().to_string(),
                rootfs: rootfs.map(|r| r.display().to_string()),
                available,
                runnable: available && runnable_here,
                note,
                cmdline: if *name == "linux" {
                    "console=ttyS0 reboot=k panic=1 root=/dev/vda rw".into()
                } else {
                    "console=ttyS0".into()
                },
            }
        })
        .collect()
}

/// The default image cache.
pub fn default_dir() -> PathBuf {
    std::env::var_os("MINICLOUD_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/minicloud/images"))
}

/// $HOME, or / when unset.
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}
