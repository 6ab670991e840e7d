//! The generation slots of a vault file: its shared-memory sidecar `<vault>.shm` (or
//! private slots for an exclusive vault), chosen at open, and their upkeep.
//!
//! Storage-agnostic: whichever backend stores the data in one file shared by the
//! processes of a host hands these slots to the vault (`Backend::generations`) and bumps
//! them around its commits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Generations;
use crate::error::{Error, Result};
use crate::files::VaultFile;

/// What the slots need to know of the vault file, taken before the database owns it.
pub(crate) struct FileIdentity {
    canonical: PathBuf,
    links: u64,
    /// Device and inode, when they could be read.
    dev_ino: Option<(u64, u64)>,
}

impl FileIdentity {
    pub(crate) fn of(vault_file: &VaultFile) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            canonical: vault_file.canonical.clone(),
            links: vault_file.links,
            dev_ino: vault_file.file.metadata().ok().map(|m| (m.dev(), m.ino())),
        }
    }
}
use crate::model::CacheMode;
use crate::shm::Sidecar;

/// The slots of one open vault file, and what is watched to keep trusting them.
pub(crate) struct FileSlots {
    pub(crate) sidecar: Option<Arc<Sidecar>>,
    mode: CacheMode,
    note: Option<String>,
    /// The vault file's canonical path, device and inode while the shared cache is in use:
    /// `maintain` watches its hard-link count (by path: a kept descriptor would keep the
    /// database's open-file-description locks alive after `close`).
    watched: Option<(PathBuf, u64, u64)>,
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".shm");
    PathBuf::from(s)
}

impl FileSlots {
    /// Choose the slots of `vault_file` (identified by `vault_id`): private ones for an
    /// exclusive vault, none when the shared cache is off or cannot be trusted, else the
    /// shared sidecar named from the file's canonical path. A sidecar that is unsafe to
    /// map (another owner, loose mode) is refused with `invalid_argument`.
    pub(crate) fn open(
        vault_file: &FileIdentity,
        vault_id: [u8; 16],
        exclusive: bool,
        shared_cache: bool,
        shm_slots: u32,
    ) -> Result<FileSlots> {
        let watched = vault_file
            .dev_ino
            .map(|(dev, ino)| (vault_file.canonical.clone(), dev, ino));
        let (sidecar, mode, note) = if exclusive {
            (Some(Sidecar::private(shm_slots)), CacheMode::Private, None)
        } else if !shared_cache {
            (
                None,
                CacheMode::Disabled,
                Some("shared_cache is off".into()),
            )
        } else if vault_file.links > 1 {
            // Another name for the same file would get another sidecar: processes opening
            // it by that name would never see our writes. Trust no shared cache.
            let note = format!(
                "the vault file has {} hard links; a shared cache is not trusted",
                vault_file.links
            );
            (None, CacheMode::Disabled, Some(note))
        } else {
            // Named from the canonical path: every name (symlink) of the file shares it.
            let shm = sidecar_path(&vault_file.canonical);
            match Sidecar::open(&shm, vault_id, shm_slots) {
                Ok(s) => (Some(s), CacheMode::Shared, None),
                Err(e) => match crate::shm::unsafe_file(&e) {
                    Some(msg) => return Err(Error::InvalidArgument(msg)),
                    None => (
                        None,
                        CacheMode::Disabled,
                        Some(format!("cannot map {}: {e}", shm.display())),
                    ),
                },
            }
        };
        Ok(FileSlots {
            sidecar: sidecar.map(Arc::new),
            mode,
            note,
            watched: if mode == CacheMode::Shared {
                watched
            } else {
                None
            },
        })
    }

    pub(crate) fn generations(&self) -> Generations {
        Generations {
            slots: self.sidecar.clone(),
            mode: self.mode,
            note: self.note.clone(),
        }
    }

    /// The vault file's hard-link count now (0 when not watched, gone or replaced).
    fn vault_links(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Some((path, dev, ino)) = &self.watched else {
            return 0;
        };
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.dev() == *dev && m.ino() == *ino)
            .map_or(0, |m| m.nlink())
    }

    /// Remap a removed, replaced or retired sidecar; distrust it when the file gained a
    /// hard link since the open (its other name has another sidecar).
    pub(crate) fn maintain(&self) {
        if let Some(sc) = &self.sidecar {
            sc.check_path();
            if self.vault_links() > 1 {
                sc.distrust();
            }
        }
    }

    /// Why the slots cannot be trusted now (a hard link made since the open).
    pub(crate) fn distrust_reason(&self) -> Option<String> {
        let links = self.vault_links();
        (links > 1).then(|| {
            format!("the vault file has {links} hard links; a shared cache is not trusted")
        })
    }
}
