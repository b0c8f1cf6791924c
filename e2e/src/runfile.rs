//! The runtime-file arguments `acv-local` and `acv-all-in-one` share: `[FILE] [NAME=VALUE ...]`, with `SHOP_BIN`
//! defaulting to the `acv-shop` next to the running binary.

use std::{collections::BTreeMap, path::PathBuf};

use acv_runtime::RuntimeSpec;

/// Where a runtime file is looked for when none is given.
pub const DEFAULT_FILE: &str = "e2e/shop.yaml";

/// `[FILE] [NAME=VALUE ...]` (flatten into a binary's clap arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeFileArgs {
    /// The runtime file (services, commands, ports, health checks) [default: e2e/shop.yaml].
    #[arg(env = "ACV_RUNTIME_FILE")]
    pub file: Option<PathBuf>,
    /// Variables substituted into the runtime file, e.g. `FRONT_END_PORT=0` or `SHOP_BIN=/path/acv-shop`.
    #[arg(value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// Parses `NAME=VALUE`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

impl RuntimeFileArgs {
    /// `prog NAME=VALUE ...` without a file puts the first assignment in the file's place: move it back.
    pub fn fix_positionals(&mut self) -> Result<(), String> {
        if let Some(f) = self
            .file
            .take_if(|f| !f.exists() && f.to_string_lossy().contains('='))
        {
            self.vars.insert(0, parse_var(&f.to_string_lossy())?);
        }
        Ok(())
    }

    /// The file to read.
    pub fn path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_FILE))
    }

    /// Reads and validates the runtime file with the variables (`SHOP_BIN` defaults to the `acv-shop` next to this
    /// binary). The error names the file.
    pub fn load(&self) -> Result<RuntimeSpec, String> {
        let file = self.path();
        let mut vars = BTreeMap::new();
        if let Some(sibling) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("acv-shop")))
        {
            vars.insert("SHOP_BIN".to_owned(), sibling.display().to_string());
        }
        vars.extend(self.vars.iter().cloned());
        RuntimeSpec::from_file(&file, &vars)
            .and_then(|s| s.validate().map(|()| s))
            .map_err(|e| format!("runtime file {}: {e}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_without_a_file_move_back_to_the_variables() {
        let mut a = RuntimeFileArgs {
            file: Some(PathBuf::from("PORT=1")),
            vars: vec![("X".into(), "2".into())],
        };
        a.fix_positionals().unwrap();
        assert_eq!(a.file, None);
        assert_eq!(
            a.vars,
            vec![("PORT".into(), "1".into()), ("X".into(), "2".into())]
        );
        assert_eq!(a.path(), PathBuf::from(DEFAULT_FILE));
        assert!(parse_var("=1").is_err());
        assert!(parse_var("novalue").is_err());
        let missing = RuntimeFileArgs {
            file: Some(PathBuf::from("/nonexistent/acv.yaml")),
            vars: vec![],
        };
        assert!(missing.load().unwrap_err().contains("/nonexistent/acv.yaml"));
    }
}
