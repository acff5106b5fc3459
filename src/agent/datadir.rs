//! The agent's `-data-dir`: checked writable at start, holds the persistent node ID.

use std::path::{Path, PathBuf};

use super::entropy;
use crate::files::{Access, create_private_dir, write_atomic};

/// An opened, writable data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Creates the directory if needed and proves it writable, or explains why not.
    pub fn open(path: &Path) -> Result<Self, String> {
        create_private_dir(path).map_err(|e| format!("data_dir {e}"))?;
        if !path.is_dir() {
            return Err(format!("data_dir {}: not a directory", path.display()));
        }
        let probe = path.join(".murmur-write-check");
        std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| format!("data_dir {} is not writable: {e}", path.display()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
        })
    }

    /// Directory path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node ID stored in `node-id`, created on first start (as Consul does).
    pub fn node_id(&self) -> Result<String, String> {
        let f = self.path.join("node-id");
        match std::fs::read_to_string(&f) {
            Ok(s) => {
                let id = s.trim().to_ascii_lowercase();
                if entropy::is_uuid(&id) {
                    Ok(id)
                } else {
                    Err(format!("{}: not a UUID: {:?}", f.display(), s.trim()))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = entropy::uuid()?;
                write_atomic(&f, id.as_bytes(), Access::Public)?;
                Ok(id)
            }
            Err(e) => Err(format!("{}: {e}", f.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_persists_and_bad_dirs_are_refused() {
        let d = std::env::temp_dir().join(format!("murmur-dd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let dd = DataDir::open(&d.join("sub")).unwrap();
        let id = dd.node_id().unwrap();
        assert_eq!(
            DataDir::open(&d.join("sub")).unwrap().node_id().unwrap(),
            id
        );

        let file = d.join("plain-file");
        std::fs::write(&file, "x").unwrap();
        let e = DataDir::open(&file.join("below")).unwrap_err();
        assert!(e.contains("cannot create directory"), "{e}");
        let e = DataDir::open(&file).unwrap_err();
        assert!(
            e.contains("not a directory") || e.contains("cannot create"),
            "{e}"
        );

        std::fs::write(dd.path().join("node-id"), "garbage").unwrap();
        assert!(dd.node_id().unwrap_err().contains("not a UUID"));
    }
}
