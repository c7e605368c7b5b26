//! bench: workloads and measurement helpers shared by the criterion benches and the
//! `bench` binary (memory per stored entry, end-to-end throughput harness, low-rate cost).

pub mod data;
pub mod harness;
pub mod lowrate;
pub mod mem;
pub mod pipelines;
pub mod procfs;
