//! The agent's `-data-dir`: created private, locked against a second agent, holds the persistent node
//! ID and the name of the node it belongs to.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::util::entropy;
use crate::util::files::{Access, create_private_dir, read_or_create};

/// Name of the lock file; it holds the owning agent's process ID.
pub const LOCK_FILE: &str = "murmur.lock";

/// An opened, writable data directory, locked for this process while the value lives.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
    _lock: Arc<File>,
}

impl DataDir {
    /// Creates the directory if needed (mode 0700), proves it writable and takes its lock, or explains
    /// why not.
    pub fn open(path: &Path) -> Result<Self, String> {
        create_private_dir(path).map_err(|e| format!("data_dir {e}"))?;
        if !path.is_dir() {
            return Err(format!("data_dir {}: not a directory", path.display()));
        }
        let lock = lock(path)?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: Arc::new(lock),
        })
    }

    /// Directory path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node ID stored in `node-id`, created on first start (as Consul does); the flag says whether
    /// it was created now.
    pub fn node_id(&self) -> Result<(String, bool), String> {
        let f = self.path.join("node-id");
        let (b, created) =
            read_or_create(&f, Access::Public, || Ok(entropy::uuid()?.into_bytes()))?;
        let s = String::from_utf8_lossy(&b);
        let id = s.trim().to_ascii_lowercase();
        if entropy::is_uuid(&id) {
            Ok((id, created))
        } else {
            Err(format!("{}: not a UUID: {:?}", f.display(), s.trim()))
        }
    }

    /// Checks that this data dir belongs to node `name` (recording it on first start). A node ID names
    /// one member: a second name on the same ID would show two members with one identity.
    pub fn claim_name(&self, name: &str, node_id: &str) -> Result<(), String> {
        let f = self.path.join("node-name");
        let (b, _) = read_or_create(&f, Access::Public, || Ok(name.as_bytes().to_vec()))?;
        match String::from_utf8_lossy(&b) {
            s if s.trim() == name => Ok(()),
            s => Err(format!(
                "data_dir {} belongs to node {:?} (node ID {node_id}), not {name:?}: start it with \
                 -node={}, or give {name:?} its own -data-dir. To rename the node, let it leave \
                 the cluster under its old name first, then delete {}",
                self.path.display(),
                s.trim(),
                s.trim(),
                f.display()
            )),
        }
    }
}

/// Takes the advisory lock of `dir` and writes our process ID into it; refuses, naming the holder,
/// when another agent has it. The kernel drops the lock when the process exits, however it exits.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("data_dir {} is not writable: {e}", dir.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => String::from("another process"),
            pid => format!("another murmur agent (pid {pid})"),
        };
        return Err(format!(
            "data_dir {} is in use by {holder}: stop it, or give this agent its own -data-dir",
            dir.display()
        ));
    }
    let written = f
        .set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| writeln!(f, "{}", std::process::id()));
    written.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_persists_and_bad_dirs_are_refused() {
        let d = std::env::temp_dir().join(format!("murmur-dd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let dd = DataDir::open(&d.join("sub")).unwrap();
        let (id, created) = dd.node_id().unwrap();
        assert!(created);
        assert_eq!(dd.node_id().unwrap(), (id, false));
        assert_eq!(crate::util::files::mode(&d.join("sub")).unwrap(), 0o700);

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

    #[test]
    fn one_holder_and_one_name_per_data_dir() {
        let d = std::env::temp_dir().join(format!("murmur-dl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let first = DataDir::open(&d).unwrap();
        // flock locks belong to the open file, so a second open in this process is refused too.
        let e = DataDir::open(&d).unwrap_err();
        assert!(
            e.contains(&format!(
                "in use by another murmur agent (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        first.claim_name("agent-one", "id-1").unwrap();
        first.claim_name("agent-one", "id-1").unwrap();
        let e = first.claim_name("agent-two", "id-1").unwrap_err();
        assert!(e.contains("belongs to node \"agent-one\""), "{e}");
        drop(first);
        DataDir::open(&d).expect("the lock goes with its holder");
        let _ = std::fs::remove_dir_all(&d);
    }
}
