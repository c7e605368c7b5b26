//! `local.file_match` and `loki.source.file`: globbed paths tailed by the agent's tailer.

use std::time::Duration;

use crate::alloy::args::{Args, Ctx, Schema, A, B, EMPTY};
use crate::alloy::value::Value;

pub static FILE_MATCH: Schema = Schema {
    attrs: &[
        ("path_targets", A::Required),
        ("sync_period", A::Optional),
        ("ignore_older_than", A::Optional),
    ],
    blocks: &[],
};

static FILE_MATCH_BLOCK: Schema = Schema {
    attrs: &[
        ("enabled", A::Optional),
        ("sync_period", A::Optional),
        ("ignore_older_than", A::Optional),
    ],
    blocks: &[],
};

static FILE_WATCH: Schema = Schema {
    attrs: &[
        ("min_poll_frequency", A::Optional),
        ("max_poll_frequency", A::Optional),
    ],
    blocks: &[],
};

pub static SOURCE_FILE: Schema = Schema {
    attrs: &[
        ("targets", A::Required),
        ("forward_to", A::Required),
        ("tail_from_end", A::Optional),
        ("encoding", A::Optional),
        (
            "on_positions_file_error",
            A::Unsupported(
                "a corrupt positions file is a startup error; the agent never guesses an offset",
            ),
        ),
        ("legacy_positions_file", A::Optional),
    ],
    blocks: &[
        ("file_match", B::One, &FILE_MATCH_BLOCK),
        ("file_watch", B::One, &FILE_WATCH),
        (
            "decompression",
            B::Unsupported("rotated .gz files next to a tailed file are read automatically"),
            &EMPTY,
        ),
    ],
};

/// Rescan period from `sync_period` (default 10s).
pub fn sync_period(args: &Args, ctx: &mut Ctx<'_>) -> Option<Duration> {
    args.get("sync_period", ctx, Value::to_duration)
}

/// `ignore_older_than` is only accepted when off ("0s"): the agent never skips a file.
pub fn check_ignore_older_than(args: &Args, ctx: &mut Ctx<'_>) {
    if let Some(d) = args.get("ignore_older_than", ctx, Value::to_duration) {
        if !d.is_zero() {
            ctx.error(args.pos_of("ignore_older_than"), "attribute \"ignore_older_than\" is not supported by this agent (only \"0s\"): it never skips files by age");
        }
    }
}

/// Settings from `loki.source.file`'s own arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceFileArgs {
    pub tail_from_end: bool,
    pub poll_interval: Option<Duration>,
    pub rescan_interval: Option<Duration>,
    /// `loki.source.kubernetes`'s `clustering { enabled = true }`.
    pub clustering: bool,
    /// A Promtail positions file to start from on the first start (see `tail::legacy`).
    pub legacy_positions_file: Option<std::path::PathBuf>,
}

pub fn source_file(args: &Args, ctx: &mut Ctx<'_>) -> SourceFileArgs {
    let mut out = SourceFileArgs {
        tail_from_end: args.bool("tail_from_end", false, ctx),
        legacy_positions_file: args
            .opt_string("legacy_positions_file", ctx)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from),
        ..Default::default()
    };
    if let Some(enc) = args.opt_string("encoding", ctx) {
        let e = enc.to_ascii_lowercase();
        if !e.is_empty() && e != "utf-8" && e != "utf8" {
            ctx.error(
                args.pos_of("encoding"),
                format!(
                    "attribute \"encoding\": {enc:?} is not supported by this agent (UTF-8 only)"
                ),
            );
        }
    }
    if let Some(w) = args.blocks_named("file_watch").next() {
        out.poll_interval = w.get("min_poll_frequency", ctx, Value::to_duration);
        let _ = w.get("max_poll_frequency", ctx, Value::to_duration);
    }
    if let Some(m) = args.blocks_named("file_match").next() {
        let _ = m.bool("enabled", false, ctx);
        out.rescan_interval = sync_period(m, ctx);
        check_ignore_older_than(m, ctx);
    }
    out
}
