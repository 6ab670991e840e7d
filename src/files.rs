//! Opening the vault file safely: never a file planted by another user, never one that
//! others can write, never through a symlink to someone else's file.
//!
//! [`open_vault_file`] creates a missing vault file with `O_EXCL` and mode 0600 (so nobody
//! can slip a file in between a check and the create), or opens an existing one and
//! refuses it unless it is a regular file owned by this process's effective user and not
//! writable by group or others. The checks run on the open file descriptor (`fstat`), and
//! that same descriptor is handed to redb: what was checked is what is used. The sidecar
//! applies the same owner and mode rule ([`check_owner_and_mode`], `src/shm.rs`).
//!
//! A refusal is `Error::InvalidArgument` (code `invalid_argument`): the operator has to fix
//! the file (`chown`, `chmod 600`, or remove it), retrying does not help. Its message names
//! the path, the owner uid and the mode, and says how to fix it.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The vault file, opened and checked.
pub(crate) struct VaultFile {
    /// The open file (handed to redb).
    pub(crate) file: File,
    /// Its canonical path (every symlink resolved): the sidecar is named from it.
    pub(crate) canonical: PathBuf,
    /// Its hard-link count when opened (`st_nlink`).
    pub(crate) links: u64,
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses a file owned by another user or writable by group or others. `what` names the
/// file in the message ("vault file", "sidecar").
pub(crate) fn check_owner_and_mode(
    what: &str,
    path: &Path,
    meta: &Metadata,
) -> std::result::Result<(), String> {
    let me = euid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() == me && mode & 0o022 == 0 {
        return Ok(());
    }
    let p = path.display();
    let owner = meta.uid();
    let other_user = if owner == me {
        String::new()
    } else {
        format!("run this process as uid {owner} (the owner), or ")
    };
    Err(format!(
        "refusing the {what} {p}: it is owned by uid {owner} with mode {mode:04o}, but it must \
         be owned by this process's user (uid {me}) and not writable by group or others; \
         {other_user}if the file is yours, run `chown {me} {p} && chmod 600 {p}`, otherwise \
         remove it"
    ))
}

/// Open (or create) the vault file at `path`; see the module docs.
pub(crate) fn open_vault_file(path: &Path) -> Result<VaultFile> {
    if path.as_os_str().is_empty() {
        return Err(Error::invalid("the vault path is empty"));
    }
    let cannot = |e: io::Error| Error::Storage(format!("cannot open {}: {e}", path.display()));
    // A missing file is created here, exclusively: O_EXCL never follows a symlink and fails
    // if anyone (another process of ours, or another user) created the name first.
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => {
            let canonical = std::fs::canonicalize(path).map_err(cannot)?;
            let meta = file.metadata().map_err(cannot)?;
            same_file(&canonical, &meta)?;
            return Ok(VaultFile {
                file,
                canonical,
                links: meta.nlink(),
            });
        }
        // Created by someone else just now, or there already: open it and check it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cannot(e)),
    }
    let link = std::fs::symlink_metadata(path).map_err(cannot)?;
    if link.file_type().is_symlink() && link.uid() != euid() {
        return Err(Error::InvalidArgument(format!(
            "refusing the vault path {}: it is a symlink owned by uid {} (this process runs \
             as uid {}); open the real file, or remove the link",
            path.display(),
            link.uid(),
            euid()
        )));
    }
    let canonical = std::fs::canonicalize(path).map_err(cannot)?;
    // O_NOFOLLOW on the resolved path: a link swapped in after `canonicalize` is refused.
    // O_NONBLOCK keeps a planted FIFO from blocking the open; it is cleared below.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&canonical)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.file_type().is_file() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a regular file",
            canonical.display()
        )));
    }
    check_owner_and_mode("vault file", &canonical, &meta).map_err(Error::InvalidArgument)?;
    same_file(&canonical, &meta)?;
    clear_nonblock(&file).map_err(cannot)?;
    Ok(VaultFile {
        file,
        canonical,
        links: meta.nlink(),
    })
}

/// The file at `path` is still the one opened (`meta`): nothing was swapped in meanwhile.
fn same_file(path: &Path, meta: &Metadata) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => Ok(()),
        _ => Err(Error::Storage(format!(
            "{} was replaced while it was being opened; try again",
            path.display()
        ))),
    }
}

fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor owned by `file`, which outlives the calls.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
