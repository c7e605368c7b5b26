//! `import.file` for the agent: reads a module file, or every `.alloy` file of a directory.

use super::module::ModuleSource;

/// Reads modules from the local filesystem (paths relative to the working directory, as
/// Alloy does; `module_path` gives the importing file's directory).
pub struct FsModules;

impl ModuleSource for FsModules {
    fn read(&self, path: &str) -> Result<Vec<(String, String)>, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read module {path}: {e}"))?;
        if !meta.is_dir() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read module {path}: {e}"))?;
            return Ok(vec![(path.to_string(), text)]);
        }
        let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read module directory {path}: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "alloy"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let name = p.display().to_string();
                std::fs::read_to_string(&p)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| format!("cannot read module {name}: {e}"))
            })
            .collect()
    }
}
