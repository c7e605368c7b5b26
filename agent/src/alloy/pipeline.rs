//! The per-entry processing an Alloy config describes, as plain data the agent calls per line:
//! an [`Entry`], a [`Pipeline`] of `loki.process` stages, and a [`Route`] (process stages and
//! `loki.relabel` rules in `forward_to` order) from a source to one `loki.write`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::LineFormat;

use super::relabel::{self, Labels, Rule};
use super::shared_labels::{LabelMemo, SharedLabels};
use super::stages::reads::{self, Reads};
use super::stages::Stage;

/// One log entry as `loki.process` sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    /// Shared with the other entries of its file until a stage changes it.
    pub labels: SharedLabels,
    /// Values extracted by parsing stages, read by later stages.
    pub extracted: BTreeMap<String, String>,
    /// Unix nanoseconds; the read time until a stage sets it.
    pub ts: i64,
    pub line: String,
    pub structured_metadata: Labels,
    /// Opaque tag of where the entry came from (the agent's chunk sequence number); a held
    /// entry that absorbs later ones keeps the tag of the first. Not visible to stages.
    pub origin: u64,
}

impl Entry {
    pub fn new(labels: Labels, ts: i64, line: impl Into<String>) -> Self {
        Entry::shared(labels.into(), ts, line)
    }

    /// An entry with a label set other entries may share.
    pub fn shared(labels: SharedLabels, ts: i64, line: impl Into<String>) -> Self {
        Entry {
            labels,
            ts,
            line: line.into(),
            ..Default::default()
        }
    }

    /// The stream key (labels), used for per-stream state like CRI partials and multiline.
    pub fn stream_key(&self) -> String {
        use std::fmt::Write as _;
        let mut key = String::with_capacity(64);
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            let _ = write!(key, "{k}={v:?}");
        }
        key
    }

    /// A value named by a stage's `source`: the extracted map, or the line when unset.
    pub fn source(&self, source: Option<&str>) -> Option<String> {
        match source {
            None | Some("") => Some(self.line.clone()),
            Some(s) => self.extracted.get(s).cloned(),
        }
    }
}

/// `loki.process` stages in source order, with their per-stream state and drop counters.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    /// Drops by reason, like `loki_process_dropped_lines_total{reason}`.
    pub dropped: BTreeMap<String, u64>,
    /// The leading `stage.cri` / `stage.docker` the agent's own parser does instead (see
    /// `load`): its extracted values are put back before the remaining stages run.
    pub lifted: Option<LineFormat>,
    /// What the stages of the component this pipeline belongs to read from the extracted map
    /// (see [`Pipeline::plan`]); `None` until planned, and then every label is copied.
    reads: Option<Arc<Reads>>,
    /// A reused vector for the entries a stage emits.
    scratch: Vec<Entry>,
    /// Per stage (same index): the label sets it made, for entries with the same input.
    memos: Vec<LabelMemo>,
}

impl Pipeline {
    pub fn new(stages: Vec<Stage>) -> Self {
        Pipeline {
            stages,
            dropped: BTreeMap::new(),
            lifted: None,
            reads: None,
            scratch: Vec::new(),
            memos: Vec::new(),
        }
    }

    /// Works out which extracted names the stages (nested `stage.match` pipelines included)
    /// may read, so an entry entering the component gets only those label and lifted-parser
    /// values. Done on the first entry, once the loader has finished the stage list.
    pub fn plan(&mut self) {
        let r = Arc::new(reads::of(&self.stages));
        self.set_reads(&r);
    }

    fn set_reads(&mut self, r: &Arc<Reads>) {
        self.reads = Some(r.clone());
        for st in &mut self.stages {
            if let Stage::Match(m) = st {
                m.pipeline.set_reads(r);
            }
        }
    }

    /// Copies the entry's labels into its extracted map: those a stage may read, or all when
    /// the pipeline is not planned.
    fn copy_labels(&self, e: &mut Entry) {
        for (k, v) in &e.labels {
            if self.reads.as_ref().is_none_or(|r| r.has(k)) {
                match e.extracted.get_mut(k) {
                    Some(slot) => slot.clone_from(v),
                    None => {
                        e.extracted.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }

    /// An entry entering a `loki.process`: as in Alloy, its extracted map starts afresh from
    /// its labels (values never cross components), plus what a lifted `stage.cri` (`content`,
    /// `flags`) or `stage.docker` (`output`) would have extracted — their raw `time` /
    /// `timestamp` strings are not kept — and the stages run.
    ///
    /// Values no stage reads are left out (see [`Pipeline::plan`]): the extracted map is not
    /// visible outside the component.
    pub fn run_component(&mut self, e: Entry, now: i64) -> Vec<Entry> {
        let mut out = Vec::new();
        self.run_component_into(e, now, &mut out);
        out
    }

    /// [`Pipeline::run_component`], appending the results to `out`.
    pub fn run_component_into(&mut self, mut e: Entry, now: i64, out: &mut Vec<Entry>) {
        if self.reads.is_none() {
            self.plan();
        }
        // The labels first, as in Alloy; a lifted parser's values then win.
        e.extracted.clear();
        self.copy_labels(&mut e);
        let reads = self.reads.as_deref().unwrap_or(&Reads::All);
        match self.lifted {
            Some(LineFormat::Cri) => {
                if reads.has("content") {
                    e.extracted.insert("content".into(), e.line.clone());
                }
                if reads.has("flags") {
                    e.extracted.insert("flags".into(), "F".into());
                }
            }
            Some(LineFormat::Docker) if reads.has("output") => {
                e.extracted.insert("output".into(), e.line.clone());
            }
            _ => {}
        }
        self.run_stages_into(e, now, out)
    }

    /// Runs one entry through every stage. Stages may hold an entry back (CRI partials,
    /// multiline), emit several, or drop it. `now` is Unix nanoseconds.
    ///
    /// The entry's labels are copied into the extracted map first (Alloy's pipeline does so,
    /// also for a `stage.match`'s nested stages), so `source = "namespace"` or `{{ .job }}`
    /// see them.
    pub fn process(&mut self, e: Entry, now: i64) -> Vec<Entry> {
        let mut out = Vec::new();
        self.process_into(e, now, &mut out);
        out
    }

    /// [`Pipeline::process`], appending the results to `out` (a `stage.match` runs its nested
    /// pipeline so).
    pub fn process_into(&mut self, mut e: Entry, now: i64, out: &mut Vec<Entry>) {
        self.copy_labels(&mut e);
        self.run_stages_into(e, now, out)
    }

    /// The entry goes through the stages on its own while each passes exactly one entry on
    /// (the usual case, with no vector per stage); from a stage that holds, drops or splits,
    /// the rest runs batch by batch.
    fn run_stages_into(&mut self, e: Entry, now: i64, out: &mut Vec<Entry>) {
        let mut next = std::mem::take(&mut self.scratch);
        next.clear();
        // `stages` is public and filled by the loader: keep one memo per stage.
        self.memos
            .resize_with(self.stages.len(), LabelMemo::default);
        let mut cur = e;
        for i in 0..self.stages.len() {
            self.stages[i].run(cur, now, &mut next, &mut self.dropped, &mut self.memos[i]);
            if next.len() == 1 {
                if let Some(one) = next.pop() {
                    cur = one;
                    continue;
                }
            }
            if next.is_empty() {
                self.scratch = next;
                return;
            }
            let mut batch = std::mem::take(&mut next);
            for (st, memo) in self.stages[i + 1..]
                .iter_mut()
                .zip(&mut self.memos[i + 1..])
            {
                if batch.is_empty() {
                    break;
                }
                let mut after = Vec::with_capacity(batch.len());
                for e in batch {
                    st.run(e, now, &mut after, &mut self.dropped, memo);
                }
                batch = after;
            }
            out.append(&mut batch);
            self.scratch = next;
            return;
        }
        out.push(cur);
        self.scratch = next;
    }

    /// When the entries processed since the last call may leave, if a `stage.limit` without
    /// `drop` made them wait (the latest such time); clears it.
    pub fn take_ready_at(&mut self) -> Option<i64> {
        self.stages
            .iter_mut()
            .filter_map(|st| match st {
                Stage::Limit(l) => l.ready_at.take(),
                Stage::Match(m) => m.pipeline.take_ready_at(),
                _ => None,
            })
            .max()
    }

    /// The smallest [`Entry::origin`] among entries a stage holds back (multiline buffers,
    /// CRI partials), if any: nothing from that origin on has fully left the pipeline.
    pub fn min_held(&self) -> Option<u64> {
        self.stages.iter().filter_map(Stage::min_held).min()
    }

    /// Emits entries whose wait time has passed (multiline `max_wait_time`); call periodically.
    pub fn flush(&mut self, now: i64, force: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.stages.len() {
            let released = self.stages[i].flush(now, force);
            if released.is_empty() {
                continue;
            }
            // Released entries continue through the stages after the one that held them.
            let mut batch = released;
            for st in &mut self.stages[i + 1..] {
                let mut next = Vec::new();
                for e in batch {
                    st.process(e, now, &mut next, &mut self.dropped);
                }
                batch = next;
            }
            out.extend(batch);
        }
        out
    }
}

/// One hop on the way from a source to `loki.write`.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `loki.process` component.
    Process { id: String, pipeline: Pipeline },
    /// A `loki.relabel` component; an entry whose labels end up empty is dropped.
    Relabel { id: String, rules: Vec<Rule> },
}

/// The chain of components a source's entries pass through, ending at one `loki.write`.
///
/// A `forward_to` list with several receivers fans out: each path from a source to a writer
/// is its own route, so an entry reaching a writer along two paths is sent twice, as in
/// Alloy. Components shared by several paths run once per path (each route owns a copy of
/// their state).
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub steps: Vec<Step>,
    /// Index of the `loki.write` the route ends at (into [`Plan::writers`]).
    ///
    /// [`Plan::writers`]: super::load::Plan::writers
    pub writer: usize,
    /// The route starts at `loki.source.kubernetes`: entries carry no `stream` label, as lines
    /// read through the Kubernetes API have none.
    pub from_api_source: bool,
}

impl Route {
    /// Processes one entry through every step.
    pub fn process(&mut self, e: Entry, now: i64) -> Vec<Entry> {
        let mut out = Vec::new();
        self.process_into(e, now, &mut out);
        out
    }

    /// [`Route::process`], appending the results to `out`; a one-step route (the usual
    /// `loki.process` → `loki.write`) needs no intermediate vector.
    pub fn process_into(&mut self, e: Entry, now: i64, out: &mut Vec<Entry>) {
        match self.steps.as_mut_slice() {
            [] => out.push(e),
            [step] => step_one(step, e, now, out),
            steps => {
                let mut batch = vec![e];
                for step in steps {
                    batch = step_run(step, batch, now);
                }
                out.append(&mut batch);
            }
        }
    }

    /// Releases held entries (multiline timeouts) through the remaining steps.
    pub fn flush(&mut self, now: i64, force: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.steps.len() {
            let released = match &mut self.steps[i] {
                Step::Process { pipeline, .. } => pipeline.flush(now, force),
                Step::Relabel { .. } => Vec::new(),
            };
            let mut batch = released;
            for step in &mut self.steps[i + 1..] {
                batch = step_run(step, batch, now);
            }
            out.extend(batch);
        }
        out
    }

    /// When the entries processed since the last call may leave (see
    /// [`Pipeline::take_ready_at`]).
    pub fn take_ready_at(&mut self) -> Option<i64> {
        self.steps
            .iter_mut()
            .filter_map(|s| match s {
                Step::Process { pipeline, .. } => pipeline.take_ready_at(),
                Step::Relabel { .. } => None,
            })
            .max()
    }

    /// The smallest origin of an entry held anywhere on the route (see [`Pipeline::min_held`]).
    pub fn min_held(&self) -> Option<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Process { pipeline, .. } => pipeline.min_held(),
                Step::Relabel { .. } => None,
            })
            .min()
    }

    /// Lines dropped by `loki.process` stages so far, by reason, summed over the route.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.steps {
            if let Step::Process { pipeline, .. } = s {
                for (reason, n) in &pipeline.dropped {
                    *out.entry(reason.clone()).or_default() += n;
                }
            }
        }
        out
    }

    /// Whether the route does nothing (the agent can skip calling it).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn step_run(step: &mut Step, batch: Vec<Entry>, now: i64) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in batch {
        step_one(step, e, now, &mut out);
    }
    out
}

fn step_one(step: &mut Step, mut e: Entry, now: i64, out: &mut Vec<Entry>) {
    match step {
        Step::Process { pipeline, .. } => pipeline.run_component_into(e, now, out),
        Step::Relabel { rules, .. } => {
            if relabel::apply(rules, &mut e.labels) && !e.labels.is_empty() {
                out.push(e);
            }
        }
    }
}
