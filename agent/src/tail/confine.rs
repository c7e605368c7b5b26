//! Opening a discovered log file only when it is a regular file that stays where the agent
//! may read: a `0.log` symlink to `/etc/passwd` (or a rotated file replaced by one) must
//! never ship the host's files to Loki.
//!
//! The checks run on the opened descriptor (fstat, `/proc/self/fd/N`), never on the path
//! before opening, so swapping the path between a check and the open changes nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a file was refused (the `reason` label of `agent_files_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A FIFO, device, socket or directory.
    NotRegular,
    /// Its real location is outside the allowed directories.
    OutsideRoots,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::NotRegular => "not_regular_file",
            Refused::OutsideRoots => "outside_allowed_roots",
        }
    }
}

/// Where tailed files may really live.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The pods root as given (discovered paths under it are held to the rules below).
    pods_root: PathBuf,
    /// The pods root with symlinks resolved.
    pods_real: PathBuf,
    /// Docker's containers directory (resolved), where kubelet's `N.log` links point on
    /// docker-runtime nodes; only its `*-json.log*` files are allowed.
    docker: Option<PathBuf>,
}

impl Roots {
    pub fn new(pods_root: &Path, docker: Option<&Path>) -> Self {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        Roots {
            pods_root: pods_root.to_path_buf(),
            pods_real: real(pods_root),
            docker: docker.filter(|d| !d.as_os_str().is_empty()).map(real),
        }
    }

    /// Whether a file discovered at `path` whose descriptor resolves to `real` may be read.
    /// Under the pods root: `real` must be under it or a docker json log. Elsewhere (paths
    /// an Alloy config names): `real` must stay in the directory the path names.
    pub fn allows(&self, path: &Path, real: &Path) -> bool {
        if real.starts_with(&self.pods_real) {
            return true;
        }
        if let Some(d) = &self.docker {
            let json_log = real
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("-json.log"));
            if json_log && real.starts_with(d) {
                return true;
            }
        }
        if path.starts_with(&self.pods_root) {
            return false;
        }
        let dir = path.parent().and_then(|p| std::fs::canonicalize(p).ok());
        dir.is_some_and(|d| real.parent() == Some(d.as_path()))
    }
}

/// Opens `path` and checks the descriptor: `Ok(Err(_))` when it must not be read (the file
/// is closed again). Non-blocking, so a FIFO planted as `0.log` cannot hang the tailer.
pub fn open(path: &Path, roots: &Roots) -> io::Result<Result<File, Refused>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Ok(Err(Refused::NotRegular));
    }
    let real = real_path(&file)?;
    if !roots.allows(path, &real) {
        return Ok(Err(Refused::OutsideRoots));
    }
    Ok(Ok(file))
}

/// Where an open file really is (Linux: the kernel's name for the descriptor).
fn real_path(file: &File) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_out_of_the_pods_root_and_non_regular_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pods = dir.path().join("pods");
        let c = pods.join("ns_p_u").join("c");
        let docker = dir.path().join("docker");
        let dc = docker.join("abc");
        std::fs::create_dir_all(&c).expect("mkdir");
        std::fs::create_dir_all(&dc).expect("mkdir");
        let secret = dir.path().join("passwd");
        std::fs::write(&secret, "root:x:0:0\n").expect("write");
        std::fs::write(c.join("0.log"), "ok\n").expect("write");
        std::fs::write(dc.join("abc-json.log"), "{}\n").expect("write");
        std::fs::write(dc.join("config.v2.json"), "{}\n").expect("write");
        std::os::unix::fs::symlink(&secret, c.join("1.log")).expect("link");
        std::os::unix::fs::symlink(dc.join("abc-json.log"), c.join("2.log")).expect("link");
        std::os::unix::fs::symlink(dc.join("config.v2.json"), c.join("3.log")).expect("link");
        std::os::unix::fs::symlink(c.join("0.log"), c.join("4.log")).expect("link");
        let roots = Roots::new(&pods, Some(&docker));
        let verdict = |name: &str| open(&c.join(name), &roots).expect("open").err();
        assert_eq!(verdict("0.log"), None);
        assert_eq!(verdict("1.log"), Some(Refused::OutsideRoots));
        assert_eq!(verdict("2.log"), None, "docker-runtime kubelet links");
        assert_eq!(verdict("3.log"), Some(Refused::OutsideRoots));
        assert_eq!(verdict("4.log"), None, "a link within the pods root");
        // Without the docker directory enabled, its logs are outside too.
        let strict = Roots::new(&pods, None);
        assert_eq!(
            open(&c.join("2.log"), &strict).expect("open").err(),
            Some(Refused::OutsideRoots)
        );
        // A FIFO neither blocks nor is read; /dev/zero is refused too.
        let fifo = c.join("5.log");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        assert_eq!(verdict("5.log"), Some(Refused::NotRegular));
        std::os::unix::fs::symlink("/dev/zero", c.join("6.log")).expect("link");
        assert_eq!(verdict("6.log"), Some(Refused::NotRegular));
        // Outside the pods root (an Alloy glob): links within the directory are fine.
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).expect("mkdir");
        std::fs::write(app.join("a.log"), "x\n").expect("write");
        std::os::unix::fs::symlink(app.join("a.log"), app.join("b.log")).expect("link");
        std::os::unix::fs::symlink(&secret, app.join("c.log")).expect("link");
        assert_eq!(open(&app.join("b.log"), &roots).expect("open").err(), None);
        assert_eq!(
            open(&app.join("c.log"), &roots).expect("open").err(),
            Some(Refused::OutsideRoots)
        );
    }
}
