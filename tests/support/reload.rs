//! Config files changed under a running tollgate, the ways operators and platforms change them:
//! an editor's or a deploy tool's write-then-rename, and a Kubernetes ConfigMap volume, where the
//! config is `tollgate.toml -> ..data/tollgate.toml` and an update swaps the `..data` symlink to
//! a new timestamped directory. Plus SIGHUP and log-line waits.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{Config, DEADLINE, Tollgate, hex, random_bytes, wait_for};

/// The file name of the config in every layout.
const CONFIG_NAME: &str = "tollgate.toml";

/// Replaces `path` the way editors and atomic writers do: the new text goes to a temporary
/// file in the same directory, which is then renamed over the config.
pub fn replace_by_rename(path: &Path, text: &str) {
    let name = path.file_name().expect("a config path names a file");
    let staged = path.with_file_name(format!(
        ".{}.{}",
        name.to_string_lossy(),
        hex(&random_bytes(4))
    ));
    std::fs::write(&staged, text).expect("write the staged config");
    std::fs::rename(&staged, path).expect("rename the staged config over the config");
}

/// A directory laid out as the kubelet lays out a ConfigMap volume.
pub struct ConfigMap {
    dir: PathBuf,
}

impl ConfigMap {
    /// Creates the layout in `dir` (created too) with `text` as the config.
    pub fn create(dir: &Path, text: &str) -> ConfigMap {
        std::fs::create_dir_all(dir).expect("create the ConfigMap directory");
        let map = ConfigMap {
            dir: dir.to_owned(),
        };
        let first = map.write_version(text);
        std::os::unix::fs::symlink(&first, dir.join("..data")).expect("link ..data");
        std::os::unix::fs::symlink(format!("..data/{CONFIG_NAME}"), map.config_path())
            .expect("link the config into ..data");
        map
    }

    /// The same layout, already in `dir`.
    pub fn at(dir: &Path) -> ConfigMap {
        ConfigMap {
            dir: dir.to_owned(),
        }
    }

    /// The path tollgate is given: a symlink into `..data`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_NAME)
    }

    /// Publishes `text` as the kubelet does: a new timestamped directory, a temporary symlink
    /// to it renamed over `..data` (one atomic step), then the old directory removed. No event
    /// ever names `tollgate.toml` itself.
    pub fn update(&self, text: &str) {
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).expect("..data is a symlink");
        let new = self.write_version(text);
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &staged).expect("link ..data_tmp");
        std::fs::rename(&staged, &data).expect("swap ..data");
        std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old version");
    }

    /// Writes `text` into a new `..<timestamp>` directory; returns the directory's name.
    fn write_version(&self, text: &str) -> String {
        let name = format!("..2026_12_02_{}", hex(&random_bytes(6)));
        let version = self.dir.join(&name);
        std::fs::create_dir(&version).expect("create a ConfigMap version directory");
        std::fs::write(version.join(CONFIG_NAME), text).expect("write the ConfigMap's config");
        name
    }
}

impl Tollgate {
    /// Starts with the config in a ConfigMap layout under the test directory (`configmap/`).
    pub fn start_configmap(config: Config) -> Tollgate {
        let admin_token = format!("adm-{}", hex(&random_bytes(24)));
        let dir = tempfile::tempdir().expect("create a temp dir");
        let text = config.render(dir.path());
        let map = ConfigMap::create(&dir.path().join("configmap"), &text);
        match Tollgate::try_start_at(dir, map.config_path(), Some(admin_token), &[]) {
            Ok(tg) => tg,
            Err(f) => panic!("tollgate did not become ready: {f:#?}\nconfig:\n{text}"),
        }
    }

    /// `config` as this process's config file would say it: the same store and admin files.
    pub fn render(&self, config: &Config) -> String {
        config.render(self.dir())
    }

    /// Sends SIGHUP.
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed: {status}");
    }

    /// A mark in the log: what is printed from now on is after it.
    pub fn log_mark(&self) -> usize {
        self.logs().len()
    }

    /// The JSON log records printed after `mark`.
    pub fn records_since(&self, mark: usize) -> Vec<Value> {
        self.logs()[mark..]
            .iter()
            .filter_map(|line| super::log_json(line))
            .collect()
    }

    /// Waits for a record with `message` after `mark` and returns the first.
    pub fn wait_for_message(&self, mark: usize, message: &str) -> Value {
        let mut found = None;
        wait_for(DEADLINE, &format!("a {message:?} log line"), || {
            found = self
                .records_since(mark)
                .into_iter()
                .find(|r| r["message"] == message);
            found.is_some()
        });
        found.expect("set when the wait ends")
    }

    /// How many records with `message` were printed after `mark`.
    pub fn count_messages(&self, mark: usize, message: &str) -> usize {
        self.records_since(mark)
            .iter()
            .filter(|r| r["message"] == message)
            .count()
    }
}
