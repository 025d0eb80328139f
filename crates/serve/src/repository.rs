//! Scanning a Triton-layout model repository: `DIR/<model>/<version>/model.onnx` with an
//! optional `DIR/<model>/config.pbtxt`.
//!
//! The scan only reads directories and configs; loading the ONNX files is
//! [`crate::ServerState::from_repository`]'s job. A model whose config is malformed, whose name
//! disagrees with its directory, or that has no version to serve is reported as failed (with
//! a message naming it and the file) rather than stopping the scan, so the other models still
//! load; entries that cannot be models are skipped with a warning.

use std::path::{Path, PathBuf};

use crate::config::{ModelConfig, VersionPolicy};
use crate::error::ServeError;

/// The file name of a model version.
pub const MODEL_FILE: &str = "model.onnx";
/// The file name of a model's configuration.
pub const CONFIG_FILE: &str = "config.pbtxt";

/// A model found in the repository, with the versions its policy selects.
#[derive(Debug)]
pub struct FoundModel {
    pub name: String,
    pub dir: PathBuf,
    pub config: Option<ModelConfig>,
    /// `(version, model file)`, lowest version first.
    pub versions: Vec<(String, PathBuf)>,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub models: Vec<FoundModel>,
    /// Models that cannot be served: `(name, reason)`.
    pub failed: Vec<(String, String)>,
    /// Skipped entries and config remarks.
    pub warnings: Vec<String>,
}

fn read_dir(p: &Path) -> Result<Vec<std::fs::DirEntry>, String> {
    let rd = std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let mut v = rd
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Scans `dir`.
pub fn scan(dir: &Path) -> Result<Scan, ServeError> {
    if !dir.is_dir() {
        return Err(ServeError::internal(format!(
            "model repository {} is not a directory",
            dir.display()
        )));
    }
    let entries =
        read_dir(dir).map_err(|e| ServeError::internal(format!("model repository: {e}")))?;
    let mut out = Scan::default();
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        match scan_model(&name, &path, &mut out.warnings) {
            Ok(m) => out.models.push(m),
            Err(reason) => out.failed.push((name, reason)),
        }
    }
    Ok(out)
}

fn scan_model(name: &str, dir: &Path, warnings: &mut Vec<String>) -> Result<FoundModel, String> {
    let cfg_path = dir.join(CONFIG_FILE);
    let config = if cfg_path.is_file() {
        let c = ModelConfig::load(&cfg_path).map_err(|e| format!("invalid configuration: {e}"))?;
        if let Some(n) = c.name.as_deref().filter(|n| *n != name) {
            return Err(format!(
                "{} names the model `{n}`, but its directory is `{name}`",
                cfg_path.display()
            ));
        }
        warnings.extend(c.warnings.iter().cloned());
        Some(c)
    } else {
        None
    };
    let mut present: Vec<(u64, String, PathBuf)> = Vec::new();
    for v in read_dir(dir)? {
        let vname = v.file_name().to_string_lossy().into_owned();
        let vpath = v.path();
        if !vpath.is_dir() || vname.starts_with('.') {
            continue;
        }
        let Ok(n) = vname.parse::<u64>() else {
            warnings.push(format!(
                "{}: not a version number; skipped (versions are directories named 1, 2, ...)",
                vpath.display()
            ));
            continue;
        };
        let file = vpath.join(MODEL_FILE);
        if !file.is_file() {
            warnings.push(format!(
                "{}: no {MODEL_FILE}; version {vname} skipped",
                vpath.display()
            ));
            continue;
        }
        present.push((n, vname, file));
    }
    if present.is_empty() {
        return Err(format!(
            "no versions in {} (expected {name}/<version>/{MODEL_FILE})",
            dir.display()
        ));
    }
    let policy = config
        .as_ref()
        .and_then(|c| c.version_policy.clone())
        .unwrap_or_default();
    let numbers: Vec<u64> = present.iter().map(|(n, _, _)| *n).collect();
    let chosen = policy.select(&numbers);
    if chosen.is_empty() {
        return Err(format!(
            "version_policy {} selects none of the versions present ({})",
            match &policy {
                VersionPolicy::Specific(v) => format!("specific {v:?}"),
                p => format!("{p:?}"),
            },
            numbers
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    present.sort_by_key(|(n, _, _)| *n);
    let versions = present
        .into_iter()
        .filter(|(n, _, _)| chosen.contains(n))
        .map(|(_, v, f)| (v, f))
        .collect();
    Ok(FoundModel {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        config,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn scan_layout_policies_and_failures() {
        let d = std::env::temp_dir().join(format!("millrace-repo-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        touch(&d.join("a/1/model.onnx"));
        touch(&d.join("a/3/model.onnx"));
        touch(&d.join("a/2/other.bin"));
        touch(&d.join("a/labels.txt"));
        touch(&d.join("b/1/model.onnx"));
        touch(&d.join("b/2/model.onnx"));
        std::fs::write(
            d.join("b/config.pbtxt"),
            "version_policy: { all: {} }\nfoo: 1\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("empty/x")).unwrap();
        touch(&d.join("bad/1/model.onnx"));
        std::fs::write(d.join("bad/config.pbtxt"), "max_batch_size: [\n").unwrap();
        touch(&d.join("named/1/model.onnx"));
        std::fs::write(d.join("named/config.pbtxt"), "name: \"other\"").unwrap();
        touch(&d.join("README.md"));

        let s = scan(&d).unwrap();
        let names: Vec<&str> = s.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let av: Vec<&str> = s.models[0].versions.iter().map(|v| v.0.as_str()).collect();
        assert_eq!(av, ["3"], "default policy: the latest version only");
        let bv: Vec<&str> = s.models[1].versions.iter().map(|v| v.0.as_str()).collect();
        assert_eq!(bv, ["1", "2"]);
        let failed: Vec<&str> = s.failed.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(failed, ["bad", "empty", "named"]);
        assert!(
            s.failed[0].1.contains("config.pbtxt:2:"),
            "{}",
            s.failed[0].1
        );
        assert!(s.failed[1].1.contains("no versions"), "{}", s.failed[1].1);
        assert!(
            s.failed[2].1.contains("names the model `other`"),
            "{}",
            s.failed[2].1
        );
        let w = s.warnings.join("\n");
        assert!(w.contains("no model.onnx; version 2 skipped"), "{w}");
        assert!(w.contains("x: not a version number"), "{w}");
        assert!(w.contains("config.pbtxt:2: field `foo`"), "{w}");
        let _ = std::fs::remove_dir_all(&d);
        assert!(scan(&d).is_err());
    }
}
