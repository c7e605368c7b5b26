//! The module system's language side: `declare` (with `argument` and `export`), `import.string`
//! and `import.file`, collected from a config into an arena of custom-component definitions
//! with Alloy's scoping rules. Instantiating them is the embedding program's job (it owns the
//! component graph); files are read through [`ModuleSource`], so this stays free of IO.
//!
//! Scoping, as in Alloy: a custom component's name resolves in the body it is used in, then in
//! the enclosing bodies (a declare sees its siblings and its own nested declares); `ns.name`
//! resolves to a top-level declare of the module imported under the namespace `ns`. An imported
//! module sees only its own declares and imports.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ast::{Block, Expr, Stmt};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::eval::{eval, Scope};
use crate::parser::parse_file;
use crate::value::Value;

/// Reads what `import.file` names. Implemented by the caller (the filesystem for the agent,
/// maps in tests).
pub trait ModuleSource {
    /// The file at `path`, or every `*.alloy` file directly in the directory at `path`, in
    /// name order, as (name for diagnostics, text) pairs.
    fn read(&self, path: &str) -> Result<Vec<(String, String)>, String>;
}

/// A source that has no files: every `import.file` fails with a clear error.
pub struct NoFiles;

impl ModuleSource for NoFiles {
    fn read(&self, path: &str) -> Result<Vec<(String, String)>, String> {
        Err(format!(
            "cannot read {path}: no module files available here"
        ))
    }
}

/// Index of a [`Namespace`] in [`Modules::namespaces`].
pub type NsId = usize;
/// Index of a [`Declare`] in [`Modules::declares`].
pub type DeclId = usize;

/// The custom components visible in one body.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    pub declares: BTreeMap<String, DeclId>,
    /// Import namespace → the imported module's top level.
    pub imports: BTreeMap<String, NsId>,
    /// The enclosing body (none for a file's top level).
    pub parent: Option<NsId>,
}

/// One `argument "name" { optional, default, comment }`.
#[derive(Debug, Clone)]
pub struct Argument {
    pub name: String,
    pub pos: Pos,
    pub optional: bool,
    pub default: Option<Value>,
    pub comment: Option<String>,
}

/// One `export "name" { value = ... }`.
#[derive(Debug, Clone)]
pub struct Export {
    pub name: String,
    pub pos: Pos,
    pub value: Expr,
}

/// A custom component definition.
#[derive(Debug, Clone)]
pub struct Declare {
    pub name: String,
    /// Where it is defined (file name and its text for diagnostics).
    pub file: Arc<str>,
    pub source: Arc<str>,
    pub pos: Pos,
    pub arguments: Vec<Argument>,
    pub exports: Vec<Export>,
    /// Component blocks of the body (built-in or custom instances), in source order.
    pub body: Vec<Block>,
    /// Resolves the custom-component names used in the body.
    pub ns: NsId,
}

/// Every definition found in a config and its imports.
#[derive(Debug, Clone, Default)]
pub struct Modules {
    pub namespaces: Vec<Namespace>,
    pub declares: Vec<Declare>,
}

/// What a block name refers to in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// A custom component.
    Custom(DeclId),
    /// Not a custom component: a built-in one (or unknown).
    Builtin,
}

/// Config blocks of the module system.
pub const MODULE_BLOCKS: &[&str] = &[
    "declare",
    "argument",
    "export",
    "import.file",
    "import.string",
    "import.git",
    "import.http",
];

const MAX_IMPORT_DEPTH: usize = 16;

impl Modules {
    /// Collects the declares and imports of a file's top level. Returns the definitions, the
    /// top level's namespace and the remaining statements (components and other config
    /// blocks), for the caller to build. `scope` evaluates import attributes (`sys.env`);
    /// `module_path` in them is the directory of `file`.
    pub fn collect<'a>(
        file: &str,
        src: &str,
        body: &'a [Stmt],
        scope: &Scope,
        files: &dyn ModuleSource,
        diags: &mut Diagnostics,
    ) -> (Modules, NsId, Vec<&'a Stmt>) {
        let mut m = Modules::default();
        let ns = m.new_ns(None);
        let mut c = Collector {
            m: &mut m,
            scope,
            files,
            diags,
            importing: vec![file.to_string()],
        };
        let src: Arc<str> = Arc::from(src);
        let file: Arc<str> = Arc::from(file);
        let mut rest = Vec::new();
        for s in body {
            match s {
                Stmt::Block(b) if is_module_block(b) => {
                    if matches!(b.full_name().as_str(), "argument" | "export") {
                        c.error(
                            &file,
                            &src,
                            b.name_pos,
                            format!("{} blocks only allowed inside a module", b.full_name()),
                        );
                        continue;
                    }
                    c.module_block(&file, &src, b, ns, 0);
                }
                other => rest.push(other),
            }
        }
        (m, ns, rest)
    }

    fn new_ns(&mut self, parent: Option<NsId>) -> NsId {
        self.namespaces.push(Namespace {
            parent,
            ..Default::default()
        });
        self.namespaces.len() - 1
    }

    /// Resolves a block name used in namespace `ns`: `name` is a declare visible there,
    /// `import_ns.name` a top-level declare of an import visible there.
    pub fn resolve(&self, ns: NsId, name: &[String]) -> Result<Resolved, String> {
        match name {
            [one] => {
                let mut cur = Some(ns);
                while let Some(n) = cur {
                    if let Some(d) = self.namespaces[n].declares.get(one) {
                        return Ok(Resolved::Custom(*d));
                    }
                    cur = self.namespaces[n].parent;
                }
                Ok(Resolved::Builtin)
            }
            [first, second] => {
                let mut cur = Some(ns);
                while let Some(n) = cur {
                    if let Some(imp) = self.namespaces[n].imports.get(first) {
                        return match self.namespaces[*imp].declares.get(second) {
                            Some(d) => Ok(Resolved::Custom(*d)),
                            None => Err(format!(
                                "custom component {second:?} is not defined in the module imported as {first:?}"
                            )),
                        };
                    }
                    cur = self.namespaces[n].parent;
                }
                Ok(Resolved::Builtin)
            }
            _ => Ok(Resolved::Builtin),
        }
    }
}

fn is_module_block(b: &Block) -> bool {
    MODULE_BLOCKS.contains(&b.full_name().as_str())
}

struct Collector<'a> {
    m: &'a mut Modules,
    scope: &'a Scope,
    files: &'a dyn ModuleSource,
    diags: &'a mut Diagnostics,
    /// Files being imported, outermost first (import cycles).
    importing: Vec<String>,
}

impl Collector<'_> {
    fn error(&mut self, file: &Arc<str>, src: &Arc<str>, pos: Pos, msg: impl Into<String>) {
        let mut d = Diagnostic::new(file, pos, msg);
        d.source = Some(src.clone());
        self.diags.push(d);
    }

    /// A `declare` or `import.*` block in namespace `ns`.
    fn module_block(&mut self, file: &Arc<str>, src: &Arc<str>, b: &Block, ns: NsId, depth: usize) {
        let name = b.full_name();
        let Some(label) = b.label.clone() else {
            self.error(
                file,
                src,
                b.name_pos,
                format!("{name} block must have a label"),
            );
            return;
        };
        match name.as_str() {
            "declare" => self.declare(file, src, b, &label, ns, depth),
            "import.git" | "import.http" => self.error(
                file,
                src,
                b.name_pos,
                format!(
                    "{name} is not supported by this agent: vendor the module and use import.file"
                ),
            ),
            "import.string" | "import.file" => self.import(file, src, b, &label, ns, depth),
            _ => self.error(
                file,
                src,
                b.name_pos,
                format!("{name} blocks only allowed inside a declare block"),
            ),
        }
    }

    fn declare(
        &mut self,
        file: &Arc<str>,
        src: &Arc<str>,
        b: &Block,
        label: &str,
        ns: NsId,
        depth: usize,
    ) {
        if label == "declare" {
            self.error(
                file,
                src,
                b.name_pos,
                "'declare' is not a valid label for a declare block",
            );
            return;
        }
        if let Some(&prev) = self.m.namespaces[ns].declares.get(label) {
            let p = &self.m.declares[prev];
            let msg = format!(
                "block declare.{label} already declared at {}:{}:{}",
                p.file, p.pos.line, p.pos.col
            );
            self.error(file, src, b.name_pos, msg);
            return;
        }
        let inner = self.m.new_ns(Some(ns));
        let mut d = Declare {
            name: label.to_string(),
            file: file.clone(),
            source: src.clone(),
            pos: b.name_pos,
            arguments: Vec::new(),
            exports: Vec::new(),
            body: Vec::new(),
            ns: inner,
        };
        // Register first so the body may refer to it (a cycle is then reported at run time).
        self.m.declares.push(d.clone());
        let id = self.m.declares.len() - 1;
        self.m.namespaces[ns].declares.insert(label.to_string(), id);
        for s in &b.body {
            let blk = match s {
                Stmt::Attr(a) => {
                    self.error(
                        file,
                        src,
                        a.name.pos,
                        format!(
                            "unrecognized attribute name {:?}: a declare body holds only blocks",
                            a.name.name
                        ),
                    );
                    continue;
                }
                Stmt::Block(blk) => blk,
            };
            match blk.full_name().as_str() {
                "argument" => {
                    if let Some(a) = self.argument(file, src, blk, &d) {
                        d.arguments.push(a);
                    }
                }
                "export" => {
                    if let Some(e) = self.export(file, src, blk, &d) {
                        d.exports.push(e);
                    }
                }
                _ if is_module_block(blk) => self.module_block(file, src, blk, inner, depth),
                "logging" | "tracing" | "http" | "remotecfg" | "livedebugging" => {
                    let msg = format!("{} block not allowed inside a module", blk.full_name());
                    self.error(file, src, blk.name_pos, msg);
                }
                _ => d.body.push(blk.clone()),
            }
        }
        self.m.declares[id] = d;
    }

    fn argument(
        &mut self,
        file: &Arc<str>,
        src: &Arc<str>,
        b: &Block,
        d: &Declare,
    ) -> Option<Argument> {
        let Some(name) = b.label.clone() else {
            self.error(file, src, b.name_pos, "argument block must have a label");
            return None;
        };
        if let Some(prev) = d.arguments.iter().find(|a| a.name == name) {
            let msg = format!(
                "block argument.{name} already declared at {file}:{}:{}",
                prev.pos.line, prev.pos.col
            );
            self.error(file, src, b.name_pos, msg);
            return None;
        }
        let mut a = Argument {
            name,
            pos: b.name_pos,
            optional: false,
            default: None,
            comment: None,
        };
        for s in &b.body {
            let Stmt::Attr(at) = s else {
                self.error(file, src, s.start(), "argument blocks take only attributes");
                continue;
            };
            let v = match eval(&at.value, self.scope) {
                Ok(v) => v,
                Err(e) => {
                    self.error(file, src, e.pos, e.msg);
                    continue;
                }
            };
            let r = match at.name.name.as_str() {
                "optional" => v.to_bool().map(|x| a.optional = x),
                "default" => {
                    a.default = Some(v);
                    Ok(())
                }
                "comment" => v.to_str().map(|x| a.comment = Some(x)),
                other => Err(format!(
                    "unrecognized attribute name {other:?} (argument takes optional, default and comment)"
                )),
            };
            if let Err(msg) = r {
                self.error(file, src, at.name.pos, msg);
            }
        }
        Some(a)
    }

    fn export(
        &mut self,
        file: &Arc<str>,
        src: &Arc<str>,
        b: &Block,
        d: &Declare,
    ) -> Option<Export> {
        let Some(name) = b.label.clone() else {
            self.error(file, src, b.name_pos, "export block must have a label");
            return None;
        };
        if let Some(prev) = d.exports.iter().find(|e| e.name == name) {
            let msg = format!(
                "block export.{name} already declared at {file}:{}:{}",
                prev.pos.line, prev.pos.col
            );
            self.error(file, src, b.name_pos, msg);
            return None;
        }
        let mut value = None;
        for s in &b.body {
            match s {
                Stmt::Attr(at) if at.name.name == "value" => value = Some(at.value.clone()),
                other => {
                    self.error(
                        file,
                        src,
                        other.start(),
                        "export takes only the attribute value",
                    );
                }
            }
        }
        let Some(value) = value else {
            self.error(
                file,
                src,
                b.name_pos,
                "missing required attribute \"value\"",
            );
            return None;
        };
        Some(Export {
            name,
            pos: b.name_pos,
            value,
        })
    }

    fn import(
        &mut self,
        file: &Arc<str>,
        src: &Arc<str>,
        b: &Block,
        label: &str,
        ns: NsId,
        depth: usize,
    ) {
        let kind = b.full_name();
        if self.m.namespaces[ns].imports.contains_key(label) {
            let msg = format!("import namespace {label:?} is already used in this module");
            self.error(file, src, b.name_pos, msg);
            return;
        }
        if depth >= MAX_IMPORT_DEPTH {
            self.error(file, src, b.name_pos, "imports are nested too deeply");
            return;
        }
        let want = if kind == "import.file" {
            "filename"
        } else {
            "content"
        };
        let allowed: &[&str] = if kind == "import.file" {
            &["filename", "detector", "poll_frequency"]
        } else {
            &["content"]
        };
        let mut scope = self.scope.clone();
        scope
            .root
            .insert("module_path".into(), Value::String(dir_of(file)));
        let mut text = None;
        let mut failed = false;
        for s in &b.body {
            let Stmt::Attr(at) = s else {
                self.error(
                    file,
                    src,
                    s.start(),
                    format!("{kind} takes only attributes"),
                );
                continue;
            };
            if !allowed.contains(&at.name.name.as_str()) {
                let msg = format!("unrecognized attribute name {:?}", at.name.name);
                self.error(file, src, at.name.pos, msg);
                continue;
            }
            if at.name.name != want {
                continue;
            }
            match eval(&at.value, &scope)
                .map_err(|e| (e.pos, e.msg))
                .and_then(|v| v.to_secret().map_err(|m| (at.value.pos, m)))
            {
                Ok(v) => text = Some((v, at.value.pos)),
                Err((pos, msg)) => {
                    failed = true;
                    self.error(
                        file,
                        src,
                        pos,
                        format!("{msg} ({kind} attributes must be known when the config loads)"),
                    )
                }
            }
        }
        let Some((value, vpos)) = text else {
            if !failed {
                let msg = format!("missing required attribute {want:?}");
                self.error(file, src, b.name_pos, msg);
            }
            return;
        };
        let sources = if kind == "import.file" {
            if self.importing.contains(&value) {
                let msg = format!("import cycle: {value} imports itself");
                self.error(file, src, vpos, msg);
                return;
            }
            match self.files.read(&value) {
                Ok(v) if v.is_empty() => {
                    self.error(file, src, vpos, format!("no .alloy file in {value}"));
                    return;
                }
                Ok(v) => v,
                Err(e) => {
                    self.error(file, src, vpos, e);
                    return;
                }
            }
        } else {
            vec![(format!("{file}:import.string.{label}"), value.clone())]
        };
        let imported = self.m.new_ns(None);
        self.importing.push(value);
        for (name, text) in sources {
            let (ast, d) = parse_file(&name, &text);
            let name: Arc<str> = Arc::from(name.as_str());
            let text: Arc<str> = Arc::from(text.as_str());
            for mut diag in d.0 {
                diag.source = Some(text.clone());
                self.diags.push(diag);
            }
            for s in &ast.body {
                match s {
                    Stmt::Block(blk)
                        if matches!(blk.full_name().as_str(), "declare")
                            || blk.full_name().starts_with("import.") =>
                    {
                        self.module_block(&name, &text, blk, imported, depth + 1)
                    }
                    other => self.error(
                        &name,
                        &text,
                        other.start(),
                        "an imported module may contain only declare and import blocks",
                    ),
                }
            }
        }
        self.importing.pop();
        self.m.namespaces[ns]
            .imports
            .insert(label.to_string(), imported);
    }
}

/// The directory part of a path (`module_path`), `.` when there is none.
fn dir_of(file: &str) -> String {
    match file.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => file[..i].to_string(),
        None => ".".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(Vec<(&'static str, &'static str)>);

    impl ModuleSource for Map {
        fn read(&self, path: &str) -> Result<Vec<(String, String)>, String> {
            let v: Vec<(String, String)> = self
                .0
                .iter()
                .filter(|(p, _)| *p == path || p.starts_with(&format!("{path}/")))
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect();
            if v.is_empty() {
                Err(format!("no such file {path}"))
            } else {
                Ok(v)
            }
        }
    }

    fn collect(src: &str, files: &dyn ModuleSource) -> (Modules, NsId, usize, Diagnostics) {
        let (f, mut d) = parse_file("main.alloy", src);
        let (m, ns, rest) = Modules::collect(
            "main.alloy",
            src,
            &f.body,
            &Scope::with_env(|_| None),
            files,
            &mut d,
        );
        (m, ns, rest.len(), d)
    }

    fn name(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn names_resolve_lexically_and_through_imports() {
        let src = r#"
declare "outer" {
  argument "x" {
    optional = true
    default  = 3
  }
  declare "inner" { }
  export "y" { value = argument.x.value }
}
declare "sibling" { }
import.file "lib" { filename = "mods" }
loki.write "w" { }
"#;
        let files = Map(vec![
            ("mods/a.alloy", "declare \"a\" {\n  b \"x\" { }\n}\n"),
            ("mods/b.alloy", "declare \"b\" { }"),
        ]);
        let (m, root, rest, d) = collect(src, &files);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(rest, 1, "only loki.write is left for the caller");
        let Ok(Resolved::Custom(outer)) = m.resolve(root, &name("outer")) else {
            panic!("outer")
        };
        let o = &m.declares[outer];
        assert_eq!(o.arguments[0].default, Some(Value::Number(3.0)));
        assert!(o.arguments[0].optional);
        assert_eq!(o.exports[0].name, "y");
        // Inside outer: its own nested declare and its siblings; not from the top level.
        assert!(matches!(
            m.resolve(o.ns, &name("inner")),
            Ok(Resolved::Custom(_))
        ));
        assert!(matches!(
            m.resolve(o.ns, &name("sibling")),
            Ok(Resolved::Custom(_))
        ));
        assert_eq!(m.resolve(root, &name("inner")), Ok(Resolved::Builtin));
        // Imported: one namespace for the whole directory; a.alloy sees b.alloy's declare.
        let Ok(Resolved::Custom(a)) = m.resolve(root, &name("lib.a")) else {
            panic!("lib.a")
        };
        assert!(matches!(
            m.resolve(m.declares[a].ns, &name("b")),
            Ok(Resolved::Custom(_))
        ));
        assert_eq!(
            m.resolve(m.declares[a].ns, &name("sibling")),
            Ok(Resolved::Builtin)
        );
        assert!(m.resolve(root, &name("lib.nope")).is_err());
        assert_eq!(m.resolve(root, &name("loki.write")), Ok(Resolved::Builtin));
    }

    #[test]
    fn invalid_module_blocks_are_reported() {
        let src = "declare \"declare\" { }\ndeclare \"d\" {\n  x = 1\n  logging { }\n}\nexport \"e\" { value = 1 }\nimport.http \"h\" { url = \"u\" }\nimport.string \"s\" {\n  content = \"loki.write \\\"w\\\" { }\"\n}\n";
        let (_, _, _, d) = collect(src, &NoFiles);
        let got: Vec<String> = d.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            got,
            [
                "main.alloy:1:1: 'declare' is not a valid label for a declare block",
                "main.alloy:3:3: unrecognized attribute name \"x\": a declare body holds only blocks",
                "main.alloy:4:3: logging block not allowed inside a module",
                "main.alloy:6:1: export blocks only allowed inside a module",
                "main.alloy:7:1: import.http is not supported by this agent: vendor the module and use import.file",
                "main.alloy:import.string.s:1:1: an imported module may contain only declare and import blocks",
            ]
        );
    }
}
