//! `-log-file` with Consul's rotation rules: the active file keeps the configured name; before a write,
//! once it holds `log_rotate_bytes` or is `log_rotate_duration` old, it is renamed to
//! `NAME-<unix nanoseconds>.EXT` and a new one started; `log_rotate_max_files` archives are kept (0 all,
//! -1 none). Written here rather than taken from a crate: the rotating-file crates name archives their
//! own way (`NAME.1`, `NAME.2024-01-01`), and Consul's users' log shippers and clean-up jobs expect
//! Consul's names.
//!
//! One difference from Consul, on purpose: Consul truncates an existing active file when the agent
//! starts, which loses the previous run's last lines (often the ones that explain a crash). murmur
//! archives that file first, as a rotation would.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many archives to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every archive (`log_rotate_max_files = 0`, Consul's default).
    All,
    /// None: archives are deleted as soon as they are made (`-1`).
    None,
    /// The newest N.
    Newest(usize),
}

impl Keep {
    /// From `log_rotate_max_files`.
    pub fn from_setting(n: i64) -> Keep {
        match n {
            0 => Keep::All,
            n if n < 0 => Keep::None,
            n => Keep::Newest(n as usize),
        }
    }
}

/// The log file's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileSettings {
    /// The active file (a `log_file` ending in `/` names a directory: the file is `murmur.log` in it).
    pub path: PathBuf,
    /// Rotate once the file holds this many bytes (0: never by size).
    pub max_bytes: u64,
    /// Rotate once the file is this old.
    pub every: Duration,
    /// Archives to keep.
    pub keep: Keep,
}

impl LogFileSettings {
    /// Consul's defaults around a `log_file` value: rotation daily and by no size, every archive kept.
    pub fn new(log_file: &str) -> LogFileSettings {
        let path = if log_file.ends_with('/') || log_file.ends_with(std::path::MAIN_SEPARATOR) {
            Path::new(log_file).join("murmur.log")
        } else {
            PathBuf::from(log_file)
        };
        LogFileSettings {
            path,
            max_bytes: 0,
            every: DEFAULT_EVERY,
            keep: Keep::All,
        }
    }
}

/// Consul's `log_rotate_duration` default (and what 0 means).
pub const DEFAULT_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The active log file, rotated as it is written.
pub struct RotatingFile {
    s: LogFileSettings,
    file: File,
    written: u64,
    opened: Instant,
    /// Only a regular file is ever renamed: `-log-file=/dev/stdout` (a device, a symlink) is written
    /// as it is.
    rotatable: bool,
}

impl RotatingFile {
    /// Opens the active file, archiving what a previous run left in it. The directory must exist, as
    /// in Consul.
    pub fn open(s: LogFileSettings) -> io::Result<RotatingFile> {
        let rotatable = match std::fs::symlink_metadata(&s.path) {
            Err(_) => true,
            Ok(m) if m.is_dir() => {
                return Err(io::Error::other(
                    "it is a directory (end the path with / to log into murmur.log in it)",
                ));
            }
            Ok(m) if m.is_file() => {
                if m.len() > 0 {
                    archive(&s.path, s.keep)?;
                }
                true
            }
            Ok(_) => false,
        };
        Ok(RotatingFile {
            file: create(&s.path)?,
            s,
            written: 0,
            opened: Instant::now(),
            rotatable,
        })
    }

    fn due(&self) -> bool {
        self.rotatable
            && ((self.s.max_bytes > 0 && self.written >= self.s.max_bytes)
                || self.opened.elapsed() >= self.s.every)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        archive(&self.s.path, self.s.keep)?;
        self.file = create(&self.s.path)?;
        self.written = 0;
        self.opened = Instant::now();
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A failed rotation (the directory went read-only, say) keeps logging into the active file
        // rather than losing lines; the next write tries again.
        if self.due() {
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn create(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o640);
    o.open(path)
}

/// `NAME.EXT` → `NAME-<unix nanoseconds>.EXT` (`.log` when the name has no extension), Consul's archive
/// name. Nanoseconds keep archives in time order when sorted by name.
fn archive_name(path: &Path) -> PathBuf {
    let (stem, ext) = stem_ext(path);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    path.with_file_name(format!("{stem}-{nanos}{ext}"))
}

fn stem_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map_or_else(
        || ".log".to_owned(),
        |e| format!(".{}", e.to_string_lossy()),
    );
    (stem, ext)
}

/// Moves the active file aside as an archive, keeping at most what `keep` allows. Old archives go
/// first, so the directory never holds more than that, even for a moment.
fn archive(path: &Path, keep: Keep) -> io::Result<()> {
    let moved = match keep {
        Keep::All => std::fs::rename(path, archive_name(path)),
        // Consul makes the archive and deletes it: the same as deleting the file.
        Keep::None => {
            prune(path, 0);
            std::fs::remove_file(path)
        }
        Keep::Newest(n) => {
            prune(path, n - 1);
            std::fs::rename(path, archive_name(path))
        }
    };
    match moved {
        // Someone removed the active file (a clean-up job): nothing to archive, and the next file
        // must still be created, or every line from now on would go into the deleted one.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Deletes all but the newest `allowed` archives. Errors are ignored: a file that cannot be deleted
/// now is tried again at the next rotation.
fn prune(path: &Path, allowed: usize) {
    let (stem, ext) = stem_ext(path);
    let prefix = format!("{stem}-");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut archives: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&ext))
                    // Nanoseconds since 1970 have 19 digits until 2286; `agent-2.log`, another
                    // agent's active file, is not an archive.
                    .is_some_and(|ts| ts.len() == 19 && ts.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .collect();
    archives.sort();
    let extra = archives.len().saturating_sub(allowed);
    for old in &archives[..extra] {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("murmur-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn archives(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "agent.log")
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_directory_gets_murmur_log_and_extensionless_names_archive_as_log() {
        assert_eq!(
            LogFileSettings::new("/var/log/murmur/").path,
            Path::new("/var/log/murmur/murmur.log")
        );
        let a = archive_name(Path::new("/x/agent"));
        let n = a.file_name().unwrap().to_str().unwrap();
        assert!(n.starts_with("agent-") && n.ends_with(".log"), "{n}");
        assert_eq!(Keep::from_setting(0), Keep::All);
        assert_eq!(Keep::from_setting(-1), Keep::None);
        assert_eq!(Keep::from_setting(3), Keep::Newest(3));
    }

    #[test]
    fn rotates_by_size_before_the_write_that_would_pass_it_and_keeps_the_newest() {
        let d = dir("size");
        let mut s = LogFileSettings::new(d.join("agent.log").to_str().unwrap());
        s.max_bytes = 10;
        s.keep = Keep::Newest(2);
        let mut f = RotatingFile::open(s).unwrap();
        for i in 0..5 {
            f.write_all(format!("line {i} of twelve\n").as_bytes())
                .unwrap();
        }
        // Each line passes 10 bytes, so every write after the first rotates: 4 archives made, 2 kept.
        let kept = archives(&d);
        assert_eq!(kept.len(), 2, "{kept:?}");
        let newest = std::fs::read_to_string(d.join(&kept[1])).unwrap();
        assert_eq!(newest, "line 3 of twelve\n");
        assert_eq!(
            std::fs::read_to_string(d.join("agent.log")).unwrap(),
            "line 4 of twelve\n"
        );
        // Unrelated files that share the prefix are never deleted.
        std::fs::write(d.join("agent-notes.log"), "mine").unwrap();
        std::fs::write(d.join("agent-2.log"), "another agent's").unwrap();
        f.write_all(b"line 5\n").unwrap();
        assert!(d.join("agent-notes.log").exists() && d.join("agent-2.log").exists());
    }

    #[test]
    fn a_directory_is_refused_and_a_link_is_written_but_never_renamed() {
        let d = dir("kinds");
        let e = RotatingFile::open(LogFileSettings::new(d.to_str().unwrap())).err();
        assert!(e.unwrap().to_string().contains("directory"));
        assert!(d.is_dir(), "the directory is left where it was");
        // Not a regular file (as /dev/stdout is not): written through, never renamed.
        let target = d.join("real.txt");
        std::fs::write(&target, "").unwrap();
        let link = d.join("agent.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut s = LogFileSettings::new(link.to_str().unwrap());
        s.max_bytes = 1;
        let mut f = RotatingFile::open(s).unwrap();
        f.write_all(b"one\n").unwrap();
        f.write_all(b"two\n").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "one\ntwo\n");
        assert_eq!(archives(&d), ["real.txt"], "no archive was made");
    }

    #[test]
    fn a_removed_active_file_is_created_again_at_the_next_rotation() {
        let d = dir("removed");
        let mut s = LogFileSettings::new(d.join("agent.log").to_str().unwrap());
        s.max_bytes = 1;
        s.keep = Keep::Newest(3);
        let mut f = RotatingFile::open(s).unwrap();
        f.write_all(b"one\n").unwrap();
        std::fs::remove_file(d.join("agent.log")).unwrap();
        f.write_all(b"two\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("agent.log")).unwrap(),
            "two\n"
        );
    }

    #[test]
    fn rotates_by_age_and_a_restart_archives_the_previous_run() {
        let d = dir("age");
        let mut s = LogFileSettings::new(d.join("agent.log").to_str().unwrap());
        s.every = Duration::ZERO;
        s.keep = Keep::None;
        let mut f = RotatingFile::open(s.clone()).unwrap();
        f.write_all(b"first\n").unwrap();
        f.write_all(b"second\n").unwrap();
        assert!(archives(&d).is_empty(), "-1 keeps no archive");
        assert_eq!(
            std::fs::read_to_string(d.join("agent.log")).unwrap(),
            "second\n"
        );
        drop(f);
        s.every = DEFAULT_EVERY;
        s.keep = Keep::All;
        let mut f = RotatingFile::open(s).unwrap();
        f.write_all(b"after restart\n").unwrap();
        let kept = archives(&d);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            std::fs::read_to_string(d.join(&kept[0])).unwrap(),
            "second\n"
        );
    }
}
