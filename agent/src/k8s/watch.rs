//! The list+watch loop of the pod watcher: kube-runtime's watcher without its stream backoff
//! (which a failed initial list resets, since the watcher then yields `Init` again), our own
//! [`Backoff`] reset only by progress, a `410 Gone` relisting at once, and one WARN when the
//! API starts failing plus one INFO when it recovers, each naming the cause.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::Api;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::Shared;

/// Why one list or watch attempt failed, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub text: String,
    /// `410 Gone`: the resource version is older than the API server's watch cache.
    pub gone: bool,
}

impl Cause {
    pub fn of(e: &watcher::Error) -> Cause {
        Cause::of_resource(e, "pods")
    }

    /// Like [`Cause::of`] for a watch of another resource (e.g. "events").
    pub fn of_resource(e: &watcher::Error, resource: &str) -> Cause {
        let (verb, err) = match e {
            watcher::Error::InitialListFailed(err) => ("list", Some(err)),
            watcher::Error::WatchStartFailed(err) | watcher::Error::WatchFailed(err) => {
                ("watch", Some(err))
            }
            watcher::Error::WatchError(status) => return Cause::status("watch", resource, status),
            watcher::Error::NoResourceVersion => ("list", None),
        };
        match err {
            Some(kube::Error::Api(status)) => Cause::status(verb, resource, status),
            Some(other) => Cause {
                text: format!("API server not reachable ({verb} {resource}): {other}"),
                gone: false,
            },
            None => Cause {
                text: e.to_string(),
                gone: false,
            },
        }
    }

    fn status(verb: &str, resource: &str, s: &kube::core::Status) -> Cause {
        let text = match s.code {
            403 => format!(
                "403 Forbidden: the service account may not {verb} {resource} (RBAC: verb \"{verb}\" on resource \"{resource}\", cluster scope): {}",
                s.message
            ),
            401 => format!("401 Unauthorized ({verb} {resource}): the credentials were rejected: {}", s.message),
            410 => format!(
                "410 Gone: the API server's watch cache expired (our resource version is too old); relisting: {}",
                s.message
            ),
            code => format!("{code} {} ({verb} {resource}): {}", s.reason, s.message),
        };
        Cause {
            text,
            gone: s.code == 410,
        }
    }
}

/// Whether the API is failing now, so each outage is logged once when it starts and once
/// when it ends.
#[derive(Debug, Default)]
struct Health {
    failing: Option<Failing>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    failures: u32,
    first: String,
}

impl Health {
    fn failed(&mut self, node: &str, cause: &Cause, retry_in: std::time::Duration) {
        match &mut self.failing {
            None => {
                tracing::warn!(
                    node,
                    cause = %cause.text,
                    retry_in = ?retry_in,
                    "Kubernetes API: listing/watching pods failed; keeping the last known pods and retrying with growing delays (logged again when it recovers)"
                );
                self.failing = Some(Failing {
                    since: Instant::now(),
                    failures: 1,
                    first: cause.text.clone(),
                });
            }
            Some(f) => {
                f.failures += 1;
                tracing::debug!(node, cause = %cause.text, failures = f.failures, retry_in = ?retry_in, "Kubernetes API still failing");
            }
        }
    }

    /// A 410 during normal operation is routine (the watch cache moved on): INFO, no outage.
    fn gone(&mut self, node: &str, cause: &Cause) {
        match &mut self.failing {
            None => tracing::info!(node, cause = %cause.text, "Kubernetes API: relisting pods now"),
            Some(f) => {
                f.failures += 1;
                tracing::debug!(node, cause = %cause.text, "Kubernetes API: relisting pods now");
            }
        }
    }

    fn progressed(&mut self, node: &str) {
        if let Some(f) = self.failing.take() {
            tracing::info!(
                node,
                failures = f.failures,
                after = ?f.since.elapsed(),
                cause = %f.first,
                "Kubernetes API: pod list/watch recovered"
            );
        }
    }
}

/// Runs the watch until the runtime stops, applying events to `writer` and publishing the
/// pod index to `shared` after every bit of progress.
pub(super) async fn run(
    api: Api<Pod>,
    config: watcher::Config,
    mut writer: Writer<Pod>,
    store: Store<Pod>,
    shared: Arc<Shared>,
    node: String,
) {
    let mut backoff = Backoff::default();
    let mut health = Health::default();
    let mut stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
    loop {
        let Some(ev) = stream.next().await else {
            // The watcher does not end on its own; start over if it ever does.
            stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
            continue;
        };
        match ev {
            Ok(ev) => {
                writer.apply_watcher_event(&ev);
                let progress = match &ev {
                    Event::InitDone => {
                        let first = !shared.mark_synced();
                        tracing::info!(
                            node = %node,
                            pods = store.state().len(),
                            resync = !first,
                            "Kubernetes API: pod list complete"
                        );
                        true
                    }
                    Event::Apply(_) | Event::Delete(_) => true,
                    // A list starting or one page of it: not progress yet.
                    Event::Init | Event::InitApply(_) => false,
                };
                if progress {
                    backoff.reset();
                    health.progressed(&node);
                    shared.publish(&store);
                }
            }
            Err(e) => {
                let cause = Cause::of(&e);
                shared.set_last_error(&cause.text);
                if cause.gone {
                    // A new list now: waiting would only keep stale pods longer. A fresh
                    // watcher also covers a 410 answering the watch request itself.
                    health.gone(&node, &cause);
                    stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
                    continue;
                }
                let delay = backoff.failed();
                health.failed(&node, &cause, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
