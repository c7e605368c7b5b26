//! Loading a config: components found, ordered as a DAG by their references (cycles are an
//! error, declaration order is irrelevant), evaluated, and assembled into a [`Plan`]: the
//! agent's [`Settings`] plus the targets and per-entry routes the config describes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::args::{decode, Args, Ctx};
use super::ast::{Block, Expr, ExprKind, Stmt};
use super::capsules;
use super::components::{
    self, file, kubernetes, kubernetes_events, otelcol, process, relabel as relabel_c, remote,
    write,
};
use super::diag::{suggest, Diagnostic, Diagnostics, Pos};
use super::eval::{eval, Scope};
use super::module::{DeclId, Declare, Export, ModuleSource, Modules, NsId, Resolved};
use super::parser::parse_file;
use super::pipeline::{Route, Step};
use super::relabel::{Rule, RuleArgs};
use super::stages::Stage;
use super::targets::{targets_from_value, AlloyDiscovery, TargetSource};
use super::value::Value;
use crate::config::{LineFormat, Settings};

/// Everything the agent needs to run an Alloy config.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Settings with the `loki.write` endpoint and source options applied. The caller may
    /// still override `pods_root`, `positions_path` and `listen` from its own flags.
    pub settings: Settings,
    /// `loki.write` parts the settings have no field for (of the first writer).
    pub write: write::WriteExtras,
    /// Every `loki.write` some source's entries reach, in id order; [`Route::writer`]
    /// indexes it. The settings' flat push fields and `endpoints` mirror the first.
    pub writers: Vec<WriterPlan>,
    /// One per `loki.source.*` component.
    pub sources: Vec<SourcePlan>,
    /// Things the operator should know (logged at startup by the caller).
    pub notes: Vec<String>,
    /// `remote.kubernetes.*` components, in id order: what `agent run` fetches before
    /// loading again with [`load_with`].
    pub remotes: Vec<remote::RemoteSpec>,
}

/// One `loki.write` component: its own endpoints (batching, retries, tenant, `max_streams`)
/// and the external labels it adds to every entry it receives.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterPlan {
    /// Component id, e.g. `loki.write.default`.
    pub id: String,
    pub endpoints: Vec<crate::config::Endpoint>,
    /// Added to an entry's labels when it has no label of that name (Alloy's
    /// `externalLabels.Merge(entry labels)`).
    pub external_labels: BTreeMap<String, String>,
}

/// A log source: which files, and what happens to each entry before `loki.write`.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// Component id, e.g. `loki.source.file.pods`.
    pub id: String,
    pub targets: TargetSource,
    /// One route per `forward_to` path to `loki.write` (usually exactly one). A leading
    /// `stage.cri`/`stage.docker` is lifted into `settings.format`, because the agent's own
    /// parser does that job (bounded partial joining) before the route runs.
    pub routes: Vec<Route>,
    /// `loki.source.kubernetes_events`: events come from the API, not from files (the
    /// source's targets are empty).
    pub events: Option<kubernetes_events::EventsSpec>,
}

impl Plan {
    /// A [`Discovery`](crate::discovery::Discovery) over every source's targets, for
    /// `agent::run_with`.
    pub fn discovery(&self) -> AlloyDiscovery {
        AlloyDiscovery::new(
            self.sources.iter().map(|s| s.targets.clone()).collect(),
            self.settings.pods_root.clone(),
        )
        .with_filename_label(
            self.sources
                .iter()
                .map(|s| {
                    let local = s.id.rsplit('/').next().unwrap_or(&s.id);
                    !local.starts_with("loki.source.kubernetes.")
                })
                .collect(),
        )
    }

    /// The event sources with their index into [`Plan::routes`].
    pub fn event_sources(&self) -> Vec<(usize, kubernetes_events::EventsSpec)> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.events.clone().map(|e| (i, e)))
            .collect()
    }

    /// The routes of every source, indexed like the targets of [`Plan::discovery`].
    pub fn routes(&self) -> Vec<Vec<Route>> {
        self.sources.iter().map(|s| s.routes.clone()).collect()
    }
}

/// What a component turned into.
#[derive(Debug, Clone)]
enum Built {
    Targets,
    Source {
        targets: TargetSource,
        forward_to: Vec<String>,
        kubernetes: bool,
        file: file::SourceFileArgs,
        events: Option<Box<kubernetes_events::EventsSpec>>,
    },
    Relabel {
        forward_to: Vec<String>,
        rules: Vec<Rule>,
    },
    Process {
        forward_to: Vec<String>,
        pipeline: super::pipeline::Pipeline,
    },
    Write {
        settings: Box<Settings>,
        extras: write::WriteExtras,
    },
    /// `loki.echo`: a route ends here, its entries logged and not sent.
    Echo,
    Nothing,
}

/// One node of the component graph: a built-in component, a custom-component instance
/// (evaluates its arguments) or one export of an instance.
struct Component<'a> {
    /// Global id: `loki.write.default`, or inside an instance `my_pipeline.a/loki.process.x`.
    id: String,
    /// Block name (`loki.process`, `my_pipeline`).
    name: String,
    block: &'a Block,
    /// The evaluation context (module instance) it lives in.
    ctx: usize,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Builtin,
    /// Instance of a declare; its body lives in context `child`.
    Instance {
        decl: DeclId,
        child: usize,
    },
    /// `export "name"` of the instance whose body is the component's context.
    Export {
        export: &'a Export,
        instance: usize,
    },
}

/// A module instance's evaluation context (index 0: the config's top level).
struct Context {
    /// Prepended to component ids inside it (`my_pipeline.a/`).
    prefix: String,
    scope: Scope,
    ns: NsId,
    file: Arc<str>,
    /// The module text, when it is not the main file's.
    source: Option<Arc<str>>,
    /// "in instance of …" lines for diagnostics inside it, innermost first.
    notes: Vec<String>,
    /// The instance component whose body this is.
    instance: Option<usize>,
    /// Local id → component index.
    ids: BTreeMap<String, usize>,
    seen: BTreeMap<String, Pos>,
}

/// How deep custom components may nest (a declare that instantiates itself is a cycle).
const MAX_INSTANCE_DEPTH: usize = 32;

/// Loads a config from source text. `scope` supplies the environment for `sys.env`;
/// `import.file` reads the filesystem; `remote.kubernetes.*` data are placeholders (see
/// [`load_with`]).
pub fn load(file_name: &str, src: &str, scope: Scope) -> Result<Plan, Diagnostics> {
    load_full(
        file_name,
        src,
        scope,
        &super::module_files::FsModules,
        &remote::Fetched::new(),
    )
}

/// Like [`load`], with the data of `remote.kubernetes.*` components already fetched (by
/// component id); a component missing from `fetched` gets placeholders and a note.
pub fn load_with(
    file_name: &str,
    src: &str,
    scope: Scope,
    fetched: &remote::Fetched,
) -> Result<Plan, Diagnostics> {
    load_full(
        file_name,
        src,
        scope,
        &super::module_files::FsModules,
        fetched,
    )
}

/// Like [`load_with`], reading imported modules through `files`.
pub fn load_full(
    file_name: &str,
    src: &str,
    scope: Scope,
    files: &dyn ModuleSource,
    fetched: &remote::Fetched,
) -> Result<Plan, Diagnostics> {
    let (ast, mut diags) = parse_file(file_name, src);
    let mut scope = scope;
    scope.capsule_concat = Some(capsules::concat);
    let (modules, root_ns, top) =
        Modules::collect(file_name, src, &ast.body, &scope, files, &mut diags);
    // A diagnostic in the main file renders against `src`; drop the copy collect attached.
    for d in &mut diags.0 {
        if d.file == file_name {
            d.source = None;
        }
    }
    let base = scope.clone();
    let mut ctxs = vec![Context {
        prefix: String::new(),
        scope,
        ns: root_ns,
        file: Arc::from(file_name),
        source: None,
        notes: Vec::new(),
        instance: None,
        ids: BTreeMap::new(),
        seen: BTreeMap::new(),
    }];
    let mut comps: Vec<Component<'_>> = Vec::new();
    let top_blocks: Vec<&Block> = top
        .iter()
        .filter_map(|s| match s {
            Stmt::Attr(a) => {
                diags.push(Diagnostic::new(
                    file_name,
                    a.name.pos,
                    format!("unrecognized attribute name {:?}: only blocks are allowed at the top level", a.name.name),
                ));
                None
            }
            Stmt::Block(b) => Some(b),
        })
        .collect();
    let mut stack = Vec::new();
    expand(
        &modules,
        &top_blocks,
        0,
        &base,
        &mut ctxs,
        &mut comps,
        &mut stack,
        &mut diags,
    );

    let order = match order_by_references(&comps, &ctxs) {
        Ok(o) => o,
        Err((i, cycle)) => {
            let c = &comps[i];
            diags.push(in_context(
                Diagnostic::new(
                    &ctxs[c.ctx].file,
                    c.block.name_pos,
                    format!("cycle detected: {}", cycle.join(" -> ")),
                ),
                &ctxs[c.ctx],
            ));
            diags.sort();
            return Err(diags);
        }
    };

    // otelcol inertness is judged per module context, on local ids (references are local).
    let locals: Vec<String> = comps
        .iter()
        .map(|c| c.id[ctxs[c.ctx].prefix.len()..].to_string())
        .collect();
    let mut nodes_by_ctx: Vec<Vec<otelcol::Node<'_>>> = ctxs.iter().map(|_| Vec::new()).collect();
    for (c, local) in comps.iter().zip(&locals) {
        let mut refs = Vec::new();
        collect_refs_body(&c.block.body, &mut refs);
        nodes_by_ctx[c.ctx].push(otelcol::Node {
            id: local,
            name: &c.name,
            pos: c.block.name_pos,
            refs,
        });
    }
    let mut otel_notes = Vec::new();
    for (k, nodes) in nodes_by_ctx.iter().enumerate() {
        let (ds, note) = otelcol::check(&ctxs[k].file, nodes);
        for d in ds {
            diags.push(in_context(d, &ctxs[k]));
        }
        otel_notes.extend(note);
    }

    let mut built: BTreeMap<String, (Built, Pos)> = BTreeMap::new();
    let mut remotes = Vec::new();
    // Contexts whose instance failed (bad arguments): their bodies would only repeat it.
    let mut failed = vec![false; ctxs.len()];
    for i in order {
        let c = &comps[i];
        if failed[c.ctx] {
            if let Kind::Instance { child, .. } = c.kind {
                failed[child] = true;
            }
            continue;
        }
        let mut cd = Diagnostics::default();
        let file = ctxs[c.ctx].file.clone();
        let mut ctx = Ctx {
            file: &file,
            diags: &mut cd,
        };
        match &c.kind {
            Kind::Builtin => {
                let local = c.id[ctxs[c.ctx].prefix.len()..].to_string();
                let path: Vec<String> = local.split('.').map(str::to_string).collect();
                if otelcol::is_otelcol(&c.name) {
                    // Never evaluated: whatever export the config names is a receiver that
                    // `forward_to` refuses (see components/otelcol.rs).
                    let exports = otelcol::referenced_exports(&local, &nodes_by_ctx[c.ctx])
                        .into_iter()
                        .map(|k| (k, receiver(&c.id)))
                        .collect();
                    ctxs[c.ctx].scope.insert_path(&path, Value::Object(exports));
                    built.insert(c.id.clone(), (Built::Nothing, c.block.name_pos));
                } else {
                    let schema = components::schema(&c.name).unwrap_or(&super::args::EMPTY);
                    let args = decode(
                        &c.block.body,
                        c.block.name_pos,
                        schema,
                        &ctxs[c.ctx].scope,
                        &mut ctx,
                    );
                    let (b, mut exports) = build(c, &args, &mut ctx);
                    if let Some(kind) = remote::kind(&c.name) {
                        let spec = remote::spec(&c.id, kind, &args, &mut ctx);
                        let keys = remote::referenced_keys(
                            &local,
                            comps
                                .iter()
                                .filter(|o| o.ctx == c.ctx)
                                .map(|o| o.block.body.as_slice()),
                        );
                        exports.insert(
                            "data".into(),
                            remote::data_export(&spec, fetched.get(&c.id), &keys),
                        );
                        remotes.push(spec);
                    }
                    ctxs[c.ctx].scope.insert_path(&path, Value::Object(exports));
                    built.insert(c.id.clone(), (b, c.block.name_pos));
                }
            }
            Kind::Instance { decl, child } => {
                let d = &modules.declares[*decl];
                let args = instance_arguments(c, d, &ctxs[c.ctx].scope, &mut ctx);
                failed[*child] = !cd.is_empty();
                ctxs[*child].scope.root.insert("argument".into(), args);
            }
            Kind::Export { export, instance } => {
                let inst = &comps[*instance];
                match eval(&export.value, &ctxs[c.ctx].scope) {
                    Ok(v) => {
                        let parent = inst.ctx;
                        let local = &inst.id[ctxs[parent].prefix.len()..];
                        let mut path: Vec<String> = local.split('.').map(str::to_string).collect();
                        path.push(export.name.clone());
                        ctxs[parent].scope.insert_path(&path, v);
                    }
                    Err(e) => ctx.error(e.pos, e.msg),
                }
            }
        }
        for d in cd.0 {
            diags.push(in_context(d, &ctxs[c.ctx]));
        }
    }

    let mut plan = assemble(file_name, &built, &mut diags);
    if let Some(p) = plan.as_mut() {
        p.notes.extend(otel_notes);
        remotes.sort_by(|a, b| a.id.cmp(&b.id));
        let unfetched: Vec<&str> = remotes
            .iter()
            .filter(|r| !fetched.contains_key(&r.id))
            .map(|r| r.id.as_str())
            .collect();
        if !unfetched.is_empty() {
            p.notes.push(format!(
                "{}: not read from the Kubernetes API by `agent check`; their data values are placeholders",
                unfetched.join(", ")
            ));
        }
        if !remotes.is_empty() {
            // A tenant_id can come from remote data, which may change while running: entries
            // no stage.tenant claimed take each endpoint's tenant when they are pushed.
            p.settings.tenant = crate::config::ENDPOINT_TENANT.to_string();
        }
        p.remotes = remotes;
    }
    diags.sort();
    diags.0.dedup();
    match plan {
        Some(p) if diags.is_empty() => Ok(p),
        _ => Err(diags),
    }
}

/// Adds the module's text and the "in instance of" chain to a diagnostic from context `c`.
fn in_context(mut d: Diagnostic, c: &Context) -> Diagnostic {
    if d.source.is_none() {
        d.source = c.source.clone();
    }
    d.notes.extend(c.notes.iter().cloned());
    d
}

/// Turns blocks of one body into components of context `ctx`, instantiating custom
/// components (their bodies become new contexts).
#[allow(clippy::too_many_arguments)]
fn expand<'a>(
    modules: &'a Modules,
    blocks: &[&'a Block],
    ctx: usize,
    base: &Scope,
    ctxs: &mut Vec<Context>,
    comps: &mut Vec<Component<'a>>,
    stack: &mut Vec<DeclId>,
    diags: &mut Diagnostics,
) {
    for &b in blocks {
        let file = ctxs[ctx].file.clone();
        let (source, notes) = (ctxs[ctx].source.clone(), ctxs[ctx].notes.clone());
        let err = |pos: Pos, msg: String| {
            let mut d = Diagnostic::new(&file, pos, msg);
            d.source = source.clone();
            d.notes.extend(notes.iter().cloned());
            d
        };
        let name = b.full_name();
        let resolved = match modules.resolve(ctxs[ctx].ns, &b.name) {
            Ok(r) => r,
            Err(msg) => {
                diags.push(err(b.name_pos, msg));
                continue;
            }
        };
        if resolved == Resolved::Builtin {
            match builtin_problem(&name, b) {
                Builtin::Component => {}
                Builtin::Skip => continue,
                Builtin::Reject(d) => {
                    let mut e = err(d.pos, d.message);
                    e.hint = d.hint;
                    diags.push(e);
                    continue;
                }
            }
        }
        let Some(label) = &b.label else {
            diags.push(err(
                b.name_pos,
                format!("component {name:?} must have a label"),
            ));
            continue;
        };
        let local = format!("{name}.{label}");
        if let Some(prev) = ctxs[ctx].seen.get(&local) {
            let msg = format!(
                "block {local} already declared at {file}:{}:{}",
                prev.line, prev.col
            );
            diags.push(err(b.name_pos, msg));
            continue;
        }
        let id = format!("{}{local}", ctxs[ctx].prefix);
        ctxs[ctx].seen.insert(local.clone(), b.name_pos);
        let idx = comps.len();
        ctxs[ctx].ids.insert(local, idx);
        let Resolved::Custom(decl) = resolved else {
            comps.push(Component {
                id,
                name,
                block: b,
                ctx,
                kind: Kind::Builtin,
            });
            continue;
        };
        let d = &modules.declares[decl];
        if stack.contains(&decl) || stack.len() >= MAX_INSTANCE_DEPTH {
            let mut chain: Vec<String> = stack
                .iter()
                .map(|s| modules.declares[*s].name.clone())
                .collect();
            chain.push(d.name.clone());
            diags.push(err(
                b.name_pos,
                format!(
                    "cycle detected: custom component {} instantiates itself ({})",
                    d.name,
                    chain.join(" -> ")
                ),
            ));
            continue;
        }
        let child = ctxs.len();
        let mut notes = vec![format!(
            "in instance of {id} at {file}:{}:{}",
            b.name_pos.line, b.name_pos.col
        )];
        notes.extend(ctxs[ctx].notes.iter().cloned());
        ctxs.push(Context {
            prefix: format!("{id}/"),
            scope: base.clone(),
            ns: d.ns,
            file: d.file.clone(),
            source: Some(d.source.clone()),
            notes,
            instance: Some(idx),
            ids: BTreeMap::new(),
            seen: BTreeMap::new(),
        });
        comps.push(Component {
            id: id.clone(),
            name,
            block: b,
            ctx,
            kind: Kind::Instance { decl, child },
        });
        stack.push(decl);
        let body: Vec<&Block> = d.body.iter().collect();
        expand(modules, &body, child, base, ctxs, comps, stack, diags);
        stack.pop();
        for e in &d.exports {
            comps.push(Component {
                id: format!("{id}/export.{}", e.name),
                name: "export".into(),
                block: b,
                ctx: child,
                kind: Kind::Export {
                    export: e,
                    instance: idx,
                },
            });
        }
    }
}

/// What a block that is not a custom component is.
enum Builtin {
    Component,
    /// A config block accepted and not applied.
    Skip,
    /// Rejected (the caller fills in the file).
    Reject(Diagnostic),
}

fn builtin_problem(name: &str, b: &Block) -> Builtin {
    if components::CONFIG_BLOCKS.contains(&name) {
        if name == "logging" || name == "livedebugging" {
            return Builtin::Skip;
        }
        return Builtin::Reject(
            Diagnostic::new(
                "",
                b.name_pos,
                format!("block {name:?} is not supported by this agent"),
            )
            .with_hint("remove it; see agent/README.md"),
        );
    }
    if components::schema(name).is_some() || otelcol::is_otelcol(name) {
        return Builtin::Component;
    }
    // A near-miss of a supported name is a typo, not an unsupported component.
    let typo = components::SUPPORTED
        .iter()
        .find(|s| super::diag::edit_distance(name, s) <= 2);
    Builtin::Reject(
        match components::unsupported_reason(name).filter(|_| typo.is_none()) {
            Some(why) => Diagnostic::new(
                "",
                b.name_pos,
                format!("component {name:?} is not supported by this agent"),
            )
            .with_hint(why),
            None => {
                let mut d =
                    Diagnostic::new("", b.name_pos, format!("unrecognized block name {name:?}"));
                if let Some(s) = suggest(name, components::SUPPORTED.iter().copied()) {
                    d = d.with_hint(format!("did you mean {s}?"));
                }
                d
            }
        },
    )
}

/// Evaluates an instance's attributes against the declare's arguments: the `argument`
/// object its body sees (`argument.NAME.value`).
fn instance_arguments(c: &Component<'_>, d: &Declare, scope: &Scope, ctx: &mut Ctx<'_>) -> Value {
    let mut given: BTreeMap<String, Value> = BTreeMap::new();
    for s in &c.block.body {
        match s {
            Stmt::Block(b) => ctx.error(
                b.name_pos,
                format!(
                    "unrecognized block name {:?}: custom component {} takes only attributes",
                    b.full_name(),
                    d.name
                ),
            ),
            Stmt::Attr(a) => {
                let name = &a.name.name;
                if !d.arguments.iter().any(|x| &x.name == name) {
                    let mut diag = Diagnostic::new(
                        ctx.file,
                        a.name.pos,
                        format!(
                            "provided argument {name:?} is not defined in the module {}",
                            d.name
                        ),
                    );
                    if let Some(s) = suggest(name, d.arguments.iter().map(|x| x.name.as_str())) {
                        diag = diag.with_hint(format!("did you mean {s}?"));
                    }
                    ctx.diags.push(diag);
                    continue;
                }
                if given.contains_key(name) {
                    ctx.error(
                        a.name.pos,
                        format!("attribute {name:?} may only be provided once"),
                    );
                    continue;
                }
                match eval(&a.value, scope) {
                    Ok(v) => {
                        given.insert(name.clone(), v);
                    }
                    Err(e) => ctx.error(e.pos, e.msg),
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for a in &d.arguments {
        let v = match given.remove(&a.name) {
            Some(v) => v,
            None if a.optional => a.default.clone().unwrap_or(Value::Null),
            None => {
                ctx.diags.push(
                    Diagnostic::new(
                        ctx.file,
                        c.block.name_pos,
                        format!(
                            "missing required argument {:?} to module {}",
                            a.name, d.name
                        ),
                    )
                    .with_note(format!(
                        "argument {} is declared at {}:{}:{}",
                        a.name, d.file, a.pos.line, a.pos.col
                    )),
                );
                continue;
            }
        };
        let mut o = BTreeMap::new();
        o.insert("value".to_string(), v);
        out.insert(a.name.clone(), Value::Object(o));
    }
    Value::Object(out)
}

/// Orders components so every component comes after those it references. On a cycle returns
/// the index of a component on it and the cycle's ids.
fn order_by_references(
    comps: &[Component<'_>],
    ctxs: &[Context],
) -> Result<Vec<usize>, (usize, Vec<String>)> {
    // Instance → its export components: a reference to an instance's exports waits for them.
    let mut exports_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, c) in comps.iter().enumerate() {
        if let Kind::Export { instance, .. } = c.kind {
            exports_of.entry(instance).or_default().push(i);
        }
    }
    let deps: Vec<BTreeSet<usize>> = comps
        .iter()
        .map(|c| {
            let mut paths = Vec::new();
            match &c.kind {
                Kind::Export { export, .. } => collect_refs(&export.value, &mut paths),
                _ => collect_refs_body(&c.block.body, &mut paths),
            }
            // An instance's attributes are evaluated in its own context, like a component's.
            let cx = &ctxs[c.ctx];
            let mut out = BTreeSet::new();
            for p in &paths {
                if p.first().map(String::as_str) == Some("argument") {
                    if let Some(i) = cx.instance {
                        out.insert(i);
                    }
                    continue;
                }
                let found = (2..=p.len())
                    .rev()
                    .find_map(|n| cx.ids.get(p[..n].join(".").as_str()).copied());
                if let Some(t) = found {
                    match (&comps[t].kind, exports_of.get(&t)) {
                        (Kind::Instance { .. }, Some(ex)) => out.extend(ex.iter().copied()),
                        _ => {
                            out.insert(t);
                        }
                    }
                }
            }
            out
        })
        .collect();
    // Depth-first with colours: 0 new, 1 on the stack, 2 done.
    let mut colour = vec![0u8; comps.len()];
    let mut order = Vec::new();
    fn visit(
        i: usize,
        deps: &[BTreeSet<usize>],
        colour: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match colour[i] {
            2 => return Ok(()),
            1 => {
                let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cyc = stack[from..].to_vec();
                cyc.push(i);
                return Err(cyc);
            }
            _ => {}
        }
        colour[i] = 1;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, colour, stack, order)?;
        }
        stack.pop();
        colour[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..comps.len() {
        let mut stack = Vec::new();
        if let Err(cyc) = visit(i, &deps, &mut colour, &mut stack, &mut order) {
            return Err((cyc[0], cyc.iter().map(|&k| comps[k].id.clone()).collect()));
        }
    }
    Ok(order)
}

fn collect_refs_body(body: &[Stmt], out: &mut Vec<Vec<String>>) {
    for s in body {
        match s {
            Stmt::Attr(a) => collect_refs(&a.value, out),
            Stmt::Block(b) => collect_refs_body(&b.body, out),
        }
    }
}

fn collect_refs(e: &Expr, out: &mut Vec<Vec<String>>) {
    if let Some(p) = e.reference_path() {
        out.push(p);
        return;
    }
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) => {}
        ExprKind::Array(v) => v.iter().for_each(|x| collect_refs(x, out)),
        ExprKind::Object(f) => f.iter().for_each(|x| collect_refs(&x.value, out)),
        ExprKind::Access(a, _) | ExprKind::Unary(_, a) | ExprKind::Paren(a) => collect_refs(a, out),
        ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
            collect_refs(a, out);
            collect_refs(b, out);
        }
        ExprKind::Call(f, args) => {
            collect_refs(f, out);
            args.iter().for_each(|x| collect_refs(x, out));
        }
    }
}

use super::capsules::receiver;

fn forward_to(args: &Args, ctx: &mut Ctx<'_>) -> Vec<String> {
    args.get("forward_to", ctx, |v| match v {
        Value::Array(a) => a
            .iter()
            .map(|r| match capsules::as_receiver(r) {
                Some(id) if otelcol::is_otelcol(id) => Err(format!(
                    "{id} is an otelcol component, which this agent does not run: logs sent there would be lost{}forward to a loki.process, loki.relabel or loki.write receiver",
                    super::args::HINT_SEP
                )),
                Some(id) => Ok(id.to_string()),
                None => Err(format!(
                    "expected a list of receivers (e.g. loki.write.default.receiver), got {}",
                    r.type_name()
                )),
            })
            .collect(),
        other => Err(format!(
            "expected a list of receivers, got {}",
            other.type_name()
        )),
    })
    .unwrap_or_default()
}

fn targets_arg(args: &Args, ctx: &mut Ctx<'_>, name: &str) -> TargetSource {
    args.get(name, ctx, |v| match capsules::as_targets(v) {
        Some(t) => Ok(t.clone()),
        None => targets_from_value(v).map(TargetSource::Static),
    })
    .unwrap_or(TargetSource::Static(Vec::new()))
}

/// Builds one component and its exports.
fn build(c: &Component<'_>, args: &Args, ctx: &mut Ctx<'_>) -> (Built, BTreeMap<String, Value>) {
    let mut exports = BTreeMap::new();
    let built = match c.name.as_str() {
        "discovery.kubernetes" => {
            let k = kubernetes::discovery(args, ctx);
            exports.insert(
                "targets".into(),
                capsules::targets(TargetSource::Kubelet(k)),
            );
            Built::Targets
        }
        "local.file_match" => {
            let _ = file::sync_period(args, ctx);
            file::check_ignore_older_than(args, ctx);
            let t = targets_arg(args, ctx, "path_targets");
            exports.insert(
                "targets".into(),
                capsules::targets(TargetSource::FileMatch(Box::new(t))),
            );
            Built::Targets
        }
        "discovery.relabel" => {
            let t = targets_arg(args, ctx, "targets");
            let rules = relabel_c::rules(args, ctx);
            exports.insert(
                "output".into(),
                capsules::targets(TargetSource::Relabel(Box::new(t), rules.clone())),
            );
            exports.insert("rules".into(), capsules::rules(rules));
            Built::Targets
        }
        "loki.relabel" => {
            let rules = relabel_c::rules(args, ctx);
            exports.insert("receiver".into(), receiver(&c.id));
            exports.insert("rules".into(), capsules::rules(rules.clone()));
            Built::Relabel {
                forward_to: forward_to(args, ctx),
                rules,
            }
        }
        "loki.process" => {
            exports.insert("receiver".into(), receiver(&c.id));
            Built::Process {
                forward_to: forward_to(args, ctx),
                pipeline: process::pipeline(args, ctx),
            }
        }
        "loki.echo" => {
            exports.insert("receiver".into(), receiver(&c.id));
            Built::Echo
        }
        "loki.secretfilter" => {
            exports.insert("receiver".into(), receiver(&c.id));
            let filter = components::secretfilter::build(args, ctx);
            Built::Process {
                forward_to: forward_to(args, ctx),
                pipeline: super::pipeline::Pipeline::new(vec![Stage::SecretFilter(Box::new(
                    filter,
                ))]),
            }
        }
        "loki.write" => {
            exports.insert("receiver".into(), receiver(&c.id));
            let mut s = Settings::default();
            let extras = write::apply(args, &mut s, ctx);
            Built::Write {
                settings: Box::new(s),
                extras,
            }
        }
        "loki.source.file" => {
            let f = file::source_file(args, ctx);
            let t = targets_arg(args, ctx, "targets");
            Built::Source {
                targets: TargetSource::FileMatch(Box::new(t)),
                forward_to: forward_to(args, ctx),
                kubernetes: false,
                file: f,
                events: None,
            }
        }
        "loki.source.kubernetes" => {
            let t = targets_arg(args, ctx, "targets");
            Built::Source {
                targets: TargetSource::FileMatch(Box::new(TargetSource::Relabel(
                    Box::new(t),
                    kubernetes_default_labels(&c.id),
                ))),
                forward_to: forward_to(args, ctx),
                kubernetes: true,
                file: file::SourceFileArgs {
                    clustering: args
                        .blocks_named("clustering")
                        .next()
                        .is_some_and(|c| c.bool("enabled", false, ctx)),
                    ..Default::default()
                },
                events: None,
            }
        }
        "loki.source.kubernetes_events" => Built::Source {
            targets: TargetSource::Static(Vec::new()),
            forward_to: forward_to(args, ctx),
            kubernetes: false,
            file: file::SourceFileArgs::default(),
            events: Some(Box::new(kubernetes_events::spec(&c.id, args, ctx))),
        },
        _ => Built::Nothing,
    };
    (built, exports)
}

/// The labels Alloy's `loki.source.kubernetes` gives a target that lacks them: `job` = the
/// component id and `instance` = `<namespace>/<pod>:<container>` (kubetail.PrepareLabels).
fn kubernetes_default_labels(id: &str) -> Vec<Rule> {
    let job = RuleArgs {
        source_labels: vec!["job".into()],
        regex: String::new(),
        target_label: "job".into(),
        replacement: id.into(),
        ..Default::default()
    };
    let instance = RuleArgs {
        source_labels: vec![
            "instance".into(),
            "__meta_kubernetes_namespace".into(),
            "__meta_kubernetes_pod_name".into(),
            "__meta_kubernetes_pod_container_name".into(),
        ],
        regex: ";(.+);(.+);(.+)".into(),
        target_label: "instance".into(),
        replacement: "$1/$2:$3".into(),
        ..Default::default()
    };
    [job, instance]
        .into_iter()
        .filter_map(|r| r.build().ok())
        .collect()
}

/// Follows `forward_to` from each source to `loki.write` and fills the settings.
fn assemble(
    file_name: &str,
    built: &BTreeMap<String, (Built, Pos)>,
    diags: &mut Diagnostics,
) -> Option<Plan> {
    let mut sources = Vec::new();
    let mut writes_used: BTreeSet<String> = BTreeSet::new();
    let mut formats: Vec<LineFormat> = Vec::new();
    let mut docker_lifted = false;
    let mut notes = Vec::new();
    let mut tail_from_end = false;
    let mut legacy_positions = Vec::new();
    let mut poll = None;
    let mut rescan = None;
    for (id, (b, pos)) in built {
        let Built::Source {
            targets,
            forward_to,
            kubernetes,
            file,
            events,
        } = b
        else {
            continue;
        };
        let mut routes = Vec::new();
        for r in forward_to {
            follow(
                file_name,
                r,
                Vec::new(),
                built,
                &mut routes,
                &mut writes_used,
                diags,
                *pos,
                0,
            );
        }
        // The agent parses CRI/docker framing itself; lift a leading parser stage.
        let mut format = if *kubernetes {
            LineFormat::Cri
        } else {
            LineFormat::Plain
        };
        for (route, _) in &mut routes {
            route.from_api_source = *kubernetes;
            if let Some(Step::Process { pipeline, .. }) = route.steps.first_mut() {
                match pipeline.stages.first() {
                    Some(Stage::Cri(_)) => {
                        pipeline.stages.remove(0);
                        pipeline.lifted = Some(LineFormat::Cri);
                        format = LineFormat::Cri;
                    }
                    Some(Stage::Docker) => {
                        pipeline.stages.remove(0);
                        pipeline.lifted = Some(LineFormat::Docker);
                        format = LineFormat::Docker;
                        // Alloy's stage.docker keeps the record's trailing newline.
                        docker_lifted = true;
                    }
                    _ => {}
                }
            }
        }
        // Event lines are made by the agent, not parsed from files.
        if !formats.contains(&format) && events.is_none() {
            formats.push(format);
        }
        if events.is_some() {
            notes.push(format!(
                "{id}: reads Kubernetes events through the API: node-independent, run it in one agent per cluster (see agent/README.md)"
            ));
        }
        if targets.uses_kubelet() {
            notes.push(format!(
                "{id}: pod targets come from the kubelet paths on this node (labels from the Kubernetes API when it is reachable)"
            ));
        }
        if file.clustering {
            notes.push(format!(
                "{id}: clustering has no effect: each DaemonSet pod reads only its own node's files, so no target is read twice or left out"
            ));
        }
        if targets.uses_label_selectors() {
            notes.push(format!(
                "{id}: label selectors are answered from the pod labels the Kubernetes API reports; without a reachable API every pod on the node is shipped (nothing is dropped on a guess)"
            ));
        }
        if let Some(legacy) = &file.legacy_positions_file {
            notes.push(format!(
                "{id}: legacy_positions_file {}: on this agent's first start (no positions file of its own), a file it names continues from Promtail's offset once that offset is checked against the file",
                legacy.display()
            ));
            if !legacy_positions.contains(legacy) {
                legacy_positions.push(legacy.clone());
            }
        }
        tail_from_end |= file.tail_from_end;
        poll = poll.or(file.poll_interval);
        rescan = rescan.or(file.rescan_interval);
        sources.push(Pending {
            id: id.clone(),
            targets: targets.clone(),
            events: events.as_deref().cloned(),
            routes: routes
                .into_iter()
                .map(|(route, writer_id)| PendingRoute { route, writer_id })
                .collect(),
        });
    }
    if sources.is_empty() {
        diags.push(Diagnostic::new(
            file_name,
            Pos::START,
            "no log source: add a loki.source.file, loki.source.kubernetes or loki.source.kubernetes_events component",
        ));
        return None;
    }
    // Writers in id order; routes name theirs by index.
    let mut writers: Vec<WriterPlan> = Vec::new();
    let mut first: Option<(Settings, write::WriteExtras)> = None;
    let mut drain = None;
    for id in &writes_used {
        let Some((Built::Write { settings, extras }, _)) = built.get(id) else {
            continue;
        };
        notes.extend(extras.notes.iter().cloned());
        drain = drain.max(Some(settings.drain_timeout));
        writers.push(WriterPlan {
            id: id.clone(),
            endpoints: settings.endpoint_list(),
            external_labels: settings.external_labels.clone(),
        });
        first.get_or_insert_with(|| ((**settings).clone(), extras.clone()));
    }
    for s in &mut sources {
        for r in &mut s.routes {
            r.route.writer = writers
                .iter()
                .position(|w| w.id == r.writer_id)
                .unwrap_or(0);
        }
    }
    let Some((mut settings, extras)) = first else {
        diags.push(Diagnostic::new(
            file_name,
            Pos::START,
            "no loki.write receives entries: forward_to of a source must lead to a loki.write receiver",
        ));
        return None;
    };
    if writers.len() > 1 {
        settings.drain_timeout = drain.unwrap_or(settings.drain_timeout);
        // Entries no stage.tenant claimed go out with each endpoint's own tenant_id.
        let tenants: BTreeSet<&str> = writers
            .iter()
            .flat_map(|w| w.endpoints.iter().map(|e| e.tenant.as_str()))
            .collect();
        if tenants.len() > 1 {
            settings.tenant = crate::config::ENDPOINT_TENANT.to_string();
        }
        notes.push(format!(
            "{} loki.write components: each entry goes to the writers its forward_to paths lead to, and a file position advances only after every one of them acknowledged it",
            writers.len()
        ));
    }
    settings.tail_from_end = tail_from_end;
    settings.legacy_positions_files = legacy_positions;
    if let Some(p) = poll {
        settings.poll_interval = p;
    }
    if let Some(r) = rescan {
        settings.rescan_interval = r;
    }
    settings.docker_keep_newline = docker_lifted;
    settings.format = if formats.len() == 1 {
        formats[0]
    } else {
        LineFormat::Auto
    };
    Some(Plan {
        settings,
        write: extras,
        writers,
        sources: sources
            .into_iter()
            .map(|s| SourcePlan {
                id: s.id,
                targets: s.targets,
                routes: s.routes.into_iter().map(|r| r.route).collect(),
                events: s.events,
            })
            .collect(),
        notes,
        remotes: Vec::new(),
    })
}

/// A source while the writers are still being numbered.
struct Pending {
    id: String,
    targets: TargetSource,
    events: Option<kubernetes_events::EventsSpec>,
    routes: Vec<PendingRoute>,
}

struct PendingRoute {
    route: Route,
    writer_id: String,
}

#[allow(clippy::too_many_arguments)]
fn follow(
    file_name: &str,
    id: &str,
    steps: Vec<Step>,
    built: &BTreeMap<String, (Built, Pos)>,
    routes: &mut Vec<(Route, String)>,
    writes: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
    pos: Pos,
    depth: usize,
) {
    // forward_to graphs are DAGs by construction (references), but stay defensive.
    if depth > 64 {
        diags.push(Diagnostic::new(
            file_name,
            pos,
            "forward_to chain is too deep",
        ));
        return;
    }
    match built.get(id) {
        Some((Built::Write { .. }, _)) => {
            writes.insert(id.to_string());
            routes.push((
                Route {
                    steps,
                    ..Default::default()
                },
                id.to_string(),
            ));
        }
        Some((Built::Echo, _)) => {
            let mut steps = steps;
            steps.push(Step::Process {
                id: id.to_string(),
                pipeline: super::pipeline::Pipeline::new(vec![Stage::Echo(id.to_string())]),
            });
            // No writer: the echo stage consumes every entry (index 0 is never reached).
            routes.push((
                Route {
                    steps,
                    ..Default::default()
                },
                String::new(),
            ));
        }
        Some((
            Built::Process {
                forward_to,
                pipeline,
            },
            p,
        )) => {
            for next in forward_to {
                let mut s = steps.clone();
                s.push(Step::Process {
                    id: id.to_string(),
                    pipeline: pipeline.clone(),
                });
                follow(
                    file_name,
                    next,
                    s,
                    built,
                    routes,
                    writes,
                    diags,
                    *p,
                    depth + 1,
                );
            }
        }
        Some((Built::Relabel { forward_to, rules }, p)) => {
            for next in forward_to {
                let mut s = steps.clone();
                s.push(Step::Relabel {
                    id: id.to_string(),
                    rules: rules.clone(),
                });
                follow(
                    file_name,
                    next,
                    s,
                    built,
                    routes,
                    writes,
                    diags,
                    *p,
                    depth + 1,
                );
            }
        }
        _ => diags.push(Diagnostic::new(
            file_name,
            pos,
            format!("{id} is not a receiver"),
        )),
    }
}
