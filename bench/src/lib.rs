//! bench: workloads and measurement helpers shared by the criterion benches and the
//! `bench` binary (memory per stored entry, end-to-end throughput harness).

pub mod data;
pub mod harness;
pub mod mem;
pub mod pipelines;
pub mod procfs;
