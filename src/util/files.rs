//! Small file helpers shared by the data dir, the keyring and `murmur tls`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who may read a file murmur writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everyone (0644): node IDs, certificates.
    Public,
    /// The owner only (0600): gossip keys, private keys.
    Owner,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Public => 0o644,
            Access::Owner => 0o600,
        }
    }
}

/// Writes through a temporary file, an fsync and a rename, so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, data: &[u8], access: Access) -> Result<(), String> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        create_private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    // A leftover temporary file would keep its old mode: start from none.
    let _ = std::fs::remove_file(&tmp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(access.mode())
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    written.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The contents of `path`; when there is no such file, `create()`'s, first written there through
/// [`write_atomic`] (files made on first start: node ID, node name, secrets). The flag says whether
/// the file was created now.
pub fn read_or_create(
    path: &Path,
    access: Access,
    create: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<(Vec<u8>, bool), String> {
    match std::fs::read(path) {
        Ok(b) => Ok((b, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = create()?;
            write_atomic(path, &b, access)?;
            Ok((b, true))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Creates `path` with `data`; refuses to replace an existing file.
pub fn create_new(path: &Path, data: &[u8], access: Access) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(access.mode())
        .open(path)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!("{} already exists", path.display()),
            _ => format!("writing {}: {e}", path.display()),
        })
}

/// Creates `dir` and any missing parents readable by the owner only (0700); an existing directory
/// keeps the mode its owner gave it.
pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: cannot create directory: {e}", dir.display()))
}

/// The permission bits of `path` (tests and diagnostics).
pub fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_owner_only_and_replacing_keeps_the_mode() {
        let d = std::env::temp_dir().join(format!("murmur-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let secret = d.join("sub/secret");
        write_atomic(&secret, b"k1", Access::Owner).unwrap();
        assert_eq!(mode(&secret).unwrap(), 0o600);
        assert_eq!(mode(&d.join("sub")).unwrap(), 0o700);
        // A stale temporary file with a wide mode is not reused.
        let tmp = secret.with_extension("tmp");
        std::fs::write(&tmp, b"old").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&secret, b"k2", Access::Owner).unwrap();
        assert_eq!(mode(&secret).unwrap(), 0o600);
        assert_eq!(std::fs::read(&secret).unwrap(), b"k2");

        let public = d.join("public");
        write_atomic(&public, b"id", Access::Public).unwrap();
        assert_eq!(mode(&public).unwrap(), 0o644);

        let key = d.join("key.pem");
        create_new(&key, b"pem", Access::Owner).unwrap();
        assert_eq!(mode(&key).unwrap(), 0o600);
        let e = create_new(&key, b"again", Access::Owner).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&key).unwrap(), b"pem");
        let _ = std::fs::remove_dir_all(&d);
    }
}
